"""Operator admin for plans, features, subscriptions and usage (all on the plans DB)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from goproxy_site.formatting import human_bytes

from . import services
from .charts import subscription_usage_bar
from .models import (
    Feature,
    FreePlanClaim,
    Notification,
    OutboxEvent,
    Plan,
    QueuedPlan,
    QuotaAction,
    ResetCycle,
    Subscription,
    SubscriptionEvent,
    TrafficSequence,
    UsageBucket,
    UsageReset,
    UserRestriction,
    WebhookDelivery,
    WebhookEndpoint,
)

if TYPE_CHECKING:  # django-stubs' helper, for the annotated changelist rows only
    from django_stubs_ext import WithAnnotations


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


class PlanForm(forms.ModelForm):
    """Lifecycle choices left out of a submission keep their defaults (cut, no reset)."""

    class Meta:
        model = Plan
        fields = [
            f.name
            for f in Plan._meta.get_fields()
            if f.concrete and f.editable and not f.auto_created and f.name != "features"
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("reset_cycle", "quota_action"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_reset_cycle(self) -> str:
        return self.cleaned_data.get("reset_cycle") or ResetCycle.NONE

    def clean_quota_action(self) -> str:
        return self.cleaned_data.get("quota_action") or QuotaAction.CUT


class PlanCounts(TypedDict):
    """What PlanAdmin.get_queryset annotates each plan with."""

    current_subscribers: int


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
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
        "reset_cycle",
        "quota_action",
        "device_limit",
        "start_on_first_use",
        "feature_list",
        "subscribers",
    ]
    list_filter = ["is_free", "is_public", "reset_cycle", "quota_action"]
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
    def subscribers(self, obj: WithAnnotations[Plan, PlanCounts]) -> int:
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
    megabytes = forms.CharField(
        required=False,
        label="MB",
        widget=forms.NumberInput(attrs={"min": 1, "style": "width:6em"}),
    )
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.all(), required=False, label="Plan", empty_label="(plan)"
    )


class HistoryInline(admin.TabularInline):
    """Assignments, starts, resets, restrictions, lifts and notifications, oldest first."""

    model = SubscriptionEvent
    fields = readonly_fields = ("at", "kind", "message", "data")
    extra = 0
    can_delete = False
    ordering = ["at", "id"]
    verbose_name_plural = "history"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ResetInline(admin.TabularInline):
    model = UsageReset
    fields = readonly_fields = (
        "period_start",
        "period_end",
        "bytes_up",
        "bytes_down",
        "was_limited",
        "manual",
    )
    extra = 0
    can_delete = False
    verbose_name_plural = "reset log"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "user_id",
        "plan",
        "status",
        "is_current",
        "usage",
        "lifetime",
        "started_at",
        "next_reset_at",
        "expires_at",
    ]
    list_filter = ["status", "is_current", "plan"]
    search_fields = ["=user_id"]
    list_select_related = ["plan"]
    action_form = SubscriptionActionForm
    actions = ["extend", "reset_usage", "disable", "enable", "top_up", "switch", "queue_next"]
    inlines = [ResetInline, HistoryInline]

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deleting would leave restrictions, claims and history pointing at nothing;
        # "Disable" is the operator's way to end a subscription.
        return False

    @admin.display(description="lifetime")
    def lifetime(self, obj: Subscription) -> str:
        return human_bytes(obj.lifetime_bytes_used)

    def _run(
        self,
        request: HttpRequest,
        queryset: QuerySet[Subscription],
        fn: Callable[[Subscription], object],
        done: str,
    ) -> None:
        count = 0
        for sub in queryset:
            try:
                fn(sub)
                count += 1
            except ValidationError as exc:
                self.message_user(request, f"{sub}: {'; '.join(exc.messages)}", messages.WARNING)
        self.message_user(request, done.format(count=count))

    @admin.action(description="Enable (undo disable)")
    def enable(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        by = f"by {request.user}"
        self._run(
            request,
            queryset,
            lambda sub: services.subscription_enable(subscription=sub, by=by),
            "Enabled {count} subscription(s).",
        )

    @admin.action(description="Top up by N MB (this period)")
    def top_up(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        try:
            mb = forms.IntegerField(min_value=1, max_value=10**9).clean(
                request.POST.get("megabytes", "").strip() or None
            )
        except ValidationError as exc:
            self.message_user(request, f"MB: {' '.join(exc.messages)}", messages.ERROR)
            return
        by = f"by {request.user}"
        self._run(
            request,
            queryset,
            lambda sub: services.subscription_top_up(subscription=sub, bytes_=mb * 10**6, by=by),
            f"Topped up {{count}} subscription(s) by {mb} MB.",
        )

    def _chosen_plan(self, request: HttpRequest) -> Plan | None:
        chosen = request.POST.get("plan")
        plan = Plan.objects.filter(pk=chosen).first() if chosen else None
        if plan is None:
            self.message_user(request, "Choose a plan.", messages.ERROR)
        return plan

    @admin.action(description="Switch to the chosen plan (keeps usage)")
    def switch(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        plan = self._chosen_plan(request)
        if plan is None:
            return
        by = f"by {request.user}"
        self._run(
            request,
            queryset,
            lambda sub: services.subscription_switch(subscription=sub, plan=plan, by=by),
            f"Switched {{count}} subscription(s) to {plan}.",
        )

    @admin.action(description="Queue the chosen plan as the next one")
    def queue_next(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        plan = self._chosen_plan(request)
        if plan is None:
            return
        by = f"by {request.user}"
        self._run(
            request,
            queryset,
            lambda sub: services.plan_queue(user_id=sub.user_id, plan=plan, by=by),
            f"Queued {plan} for {{count}} user(s).",
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Subscriptions are created by plan_assign (the "Assign plan" action on users).
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        # Changes go through the actions, which call services and keep the rules.
        return [f.name for f in Subscription._meta.fields]

    @admin.display(description="used / limit")
    def usage(self, obj: Subscription) -> str:
        return subscription_usage_bar(obj)

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

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Claims are written by plan_claim_free together with the subscription.
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services and the pipeline: operators look, never edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SubscriptionEvent)
class SubscriptionEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "user_id", "subscription", "kind", "message"]
    list_filter = ["kind"]
    search_fields = ["=user_id"]
    date_hierarchy = "at"
    list_select_related = ["subscription__plan"]


@admin.register(UsageReset)
class UsageResetAdmin(ReadOnlyAdmin):
    list_display = ["user_id", "period_start", "period_end", "bytes_up", "bytes_down", "manual"]
    list_filter = ["manual", "was_limited"]
    search_fields = ["=user_id"]


@admin.register(QueuedPlan)
class QueuedPlanAdmin(admin.ModelAdmin):
    list_display = ["user_id", "plan", "queued_at", "queued_by"]
    search_fields = ["=user_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Queue through the subscription action, which takes over at once when due.
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: QueuedPlan) -> None:
        services.plan_queue_cancel(user_id=obj.user_id, by=f"by {request.user}")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[QueuedPlan]) -> None:
        for queued in queryset:
            services.plan_queue_cancel(user_id=queued.user_id, by=f"by {request.user}")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user_id", "kind", "threshold", "emailed_at", "email_error"]
    list_filter = ["kind"]
    search_fields = ["=user_id"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "is_active", "created_at"]
    list_filter = ["is_active"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: every notification sent to every endpoint, with its outcome."""

    list_display = [
        "created_at",
        "endpoint",
        "event_id",
        "status",
        "attempts",
        "response_status",
        "last_error",
        "delivered_at",
    ]
    list_filter = ["status", "endpoint"]
    list_select_related = ["endpoint"]


@admin.register(UserRestriction)
class UserRestrictionAdmin(ReadOnlyAdmin):
    list_display = ["user_id", "reason", "throttle_bps", "version", "updated_at"]
    list_filter = ["reason"]
    search_fields = ["=user_id"]


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "event_id", "topic", "key", "created_at", "sent_at"]
    list_filter = ["topic"]
    search_fields = ["=key", "=event_id"]


@admin.register(TrafficSequence)
class TrafficSequenceAdmin(ReadOnlyAdmin):
    list_display = ["instance_id", "user_id", "last_seq", "updated_at"]
    search_fields = ["=user_id", "instance_id"]
