"""Operator admin for plans, features, subscriptions and usage (all on the plans DB)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from accounts.admin import usage_bar
from goproxy_site.formatting import human_bytes

from . import services
from .models import Feature, FreePlanClaim, Plan, Subscription, UsageBucket


@admin.register(Feature)
class FeatureAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]


class PlanFeatureInline(admin.TabularInline):
    model = Plan.features.through
    extra = 1
    verbose_name = "feature"
    verbose_name_plural = "features"
    autocomplete_fields = ["feature"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "limit",
        "duration_days",
        "price",
        "currency",
        "is_free",
        "is_public",
        "max_connections",
        "speed",
        "feature_list",
        "subscribers",
    ]
    list_filter = ["is_free", "is_public"]
    search_fields = ["name"]
    exclude = ["features"]
    inlines = [PlanFeatureInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Plan]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related("features")
            .annotate(
                current_subscribers=Count("subscriptions", filter=Q(subscriptions__is_current=True))
            )
        )

    @admin.display(description="features")
    def feature_list(self, obj: Plan) -> str:
        return ", ".join(f.name for f in obj.features.all()) or "—"

    @admin.display(description="current subscribers", ordering="current_subscribers")
    def subscribers(self, obj: Plan) -> int:
        return obj.current_subscribers

    @admin.display(description="traffic limit", ordering="traffic_limit_bytes")
    def limit(self, obj: Plan) -> str:
        return human_bytes(obj.traffic_limit_bytes)

    @admin.display(description="speed limit", ordering="speed_limit_bps")
    def speed(self, obj: Plan) -> str:
        return (
            "unlimited" if obj.speed_limit_bps is None else f"{human_bytes(obj.speed_limit_bps)}/s"
        )


class SubscriptionActionForm(ActionForm):
    # A CharField: an invalid action form reads as "No action selected", so the number
    # is checked by the action, which can say what is wrong.
    days = forms.CharField(
        required=False,
        label="Days",
        widget=forms.NumberInput(attrs={"min": 1, "style": "width:5em"}),
    )


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "user_id",
        "plan",
        "status",
        "is_current",
        "usage",
        "started_at",
        "expires_at",
    ]
    list_filter = ["status", "is_current", "plan"]
    search_fields = ["=user_id"]
    list_select_related = ["plan"]
    action_form = SubscriptionActionForm
    actions = ["extend", "reset_usage", "disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Subscriptions are created by plan_assign (the "Assign plan" action on users).
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        # Changes go through the actions, which call services and keep the rules.
        return [f.name for f in Subscription._meta.fields]

    @admin.display(description="used / limit")
    def usage(self, obj: Subscription) -> str:
        return usage_bar(obj)

    @admin.action(description="Extend by N days")
    def extend(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        raw = request.POST.get("days", "").strip()
        if not raw:
            self.message_user(request, "Enter the number of days to extend by.", messages.ERROR)
            return
        try:
            days = forms.IntegerField(min_value=1, max_value=3650).clean(raw)
        except ValidationError as exc:
            self.message_user(request, f"Days: {' '.join(exc.messages)}", messages.ERROR)
            return
        done = 0
        for sub in queryset:
            try:
                services.subscription_extend(subscription=sub, days=days)
                done += 1
            except ValidationError as exc:
                self.message_user(request, f"{sub}: {'; '.join(exc.messages)}", messages.WARNING)
        self.message_user(request, f"Extended {done} subscription(s) by {days} day(s).")

    @admin.action(description="Reset usage")
    def reset_usage(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        for sub in queryset:
            services.subscription_reset_usage(subscription=sub)
        self.message_user(request, f"Reset usage of {queryset.count()} subscription(s).")

    @admin.action(description="Disable")
    def disable(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        for sub in queryset:
            services.subscription_disable(subscription=sub, reason="disabled by operator")
        self.message_user(request, f"Disabled {queryset.count()} subscription(s).")


@admin.register(UsageBucket)
class UsageBucketAdmin(admin.ModelAdmin):
    list_display = ["user_id", "subscription", "hour", "bytes_up", "bytes_down"]
    search_fields = ["=user_id"]
    date_hierarchy = "hour"
    list_select_related = ["subscription"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(FreePlanClaim)
class FreePlanClaimAdmin(admin.ModelAdmin):
    list_display = ["user_id", "plan", "claimed_at"]
    search_fields = ["=user_id"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
