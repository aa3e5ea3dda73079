"""Operator admin for plans, features, subscriptions and usage (all on the plans DB).

Every page with a user shows their e-mail linked to the user (one accounts-DB query per
page, accounts.admin_lookup), and its list searches by e-mail, username or id. Sizes
and speeds are shown, and entered, in MB/GB and Mbit/s. Actions name the operator in
the subscription's history and in Django's admin log, and the destructive ones ask
first. Pipeline tables (outbox, sequences, restrictions) are internals: superusers find
them under "Internals", other staff do not see them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.admin_lookup import ParentUserFormSet, UserLookupMixin
from accounts.selectors import user_ids_matching
from goproxy_site.admin_actions import AuditedActionsMixin, Confirmation
from goproxy_site.admin_columns import bytes_column, text_column, time_column, when
from goproxy_site.csv_export import csv_response
from goproxy_site.formatting import human_bit_rate, human_bytes, human_speed
from goproxy_site.unit_fields import byte_size_field, speed_field

from . import services
from .action_forms import (
    SubscriptionActionForm,
    acting_operator,
    chosen_days,
    chosen_plan,
    chosen_top_up,
)
from .charts import subscription_usage_bar
from .exports import USAGE_DAILY_HEADER, usage_daily_rows
from .history_text import event_details
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
from .selectors import day_start

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
    """Sizes in MB/GB and speeds in Mbit/s or MB/s; lifecycle choices left out of a
    submission keep their defaults (cut, no reset)."""

    traffic_limit_bytes = byte_size_field(
        label="Traffic limit",
        help_text="Up + down per period (1 GB = 1,000,000,000 bytes); empty = unlimited.",
    )
    speed_limit_bps = speed_field(
        label="Speed limit",
        help_text="In each direction (1 MB/s = 8 Mbit/s); empty = unlimited.",
    )
    throttle_speed_bps = speed_field(
        label="Throttled speed",
        help_text="Speed in each direction once the quota is reached, for throttling plans.",
    )

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
        "plan_name",
        "price_tag",
        "allowance",
        "speed",
        "connection_limits",
        "lifecycle",
        "subscribers",
    ]
    list_display_links = ["plan_name"]
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

    @admin.display(description="plan", ordering="name")
    def plan_name(self, obj: Plan) -> SafeString:
        """The name, "not in the catalogue" for hidden plans, and the features."""
        hidden = "" if obj.is_public else " · not in the catalogue"
        features = ", ".join(f.name for f in obj.features.all())
        return format_html(
            '{}<br><span class="gp-muted">{}{}</span>', obj.name, features or "no features", hidden
        )

    @admin.display(description="price", ordering="price")
    def price_tag(self, obj: Plan) -> str:
        return "free" if obj.is_free or not obj.price else f"{obj.price} {obj.currency}"

    @admin.display(description="subscribers", ordering="current_subscribers")
    def subscribers(self, obj: WithAnnotations[Plan, PlanCounts]) -> int:
        return obj.current_subscribers

    @admin.display(description="allowance", ordering="traffic_limit_bytes")
    def allowance(self, obj: Plan) -> str:
        if obj.duration_days is None:
            term = "no expiry"
        else:
            term = f"{obj.duration_days} day{'s' if obj.duration_days != 1 else ''}"
        return f"{human_bytes(obj.traffic_limit_bytes)} · {term}"

    @admin.display(description="speed", ordering="speed_limit_bps")
    def speed(self, obj: Plan) -> str:
        return human_bit_rate(obj.speed_limit_bps)

    @admin.display(description="limits")
    def connection_limits(self, obj: Plan) -> str:
        return f"{obj.max_connections or '∞'} conn. · {obj.device_limit or '∞'} devices"

    @admin.display(description="cycle")
    def lifecycle(self, obj: Plan) -> str:
        cycle = (
            f"every {obj.reset_every_days} days"
            if obj.reset_cycle == ResetCycle.EVERY_N_DAYS
            else obj.get_reset_cycle_display().split(" (")[0].lower()
        )
        action = (
            f"slow to {human_bit_rate(obj.throttle_speed_bps)}"
            if obj.throttles
            else obj.get_quota_action_display().lower()
        )
        return f"{cycle} · {action}"


class HistoryInline(admin.TabularInline):
    """Assignments, starts, resets, restrictions, lifts and notifications, oldest first;
    the message names who made each change."""

    model = SubscriptionEvent
    formset = ParentUserFormSet
    fields = readonly_fields = ("local_at", "kind", "message", "details")
    extra = 0
    can_delete = False
    ordering = ["at", "id"]
    verbose_name_plural = "history"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    local_at = time_column("at", "at")

    @admin.display(description="details")
    def details(self, obj: SubscriptionEvent) -> str:
        return event_details(obj)


class ResetInline(admin.TabularInline):
    model = UsageReset
    formset = ParentUserFormSet
    fields = readonly_fields = (
        "period_start",
        "period_end",
        "up",
        "down",
        "allowance",
        "was_limited",
        "manual",
    )
    extra = 0
    can_delete = False
    verbose_name_plural = "reset log"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    up = bytes_column("bytes_up", "up")
    down = bytes_column("bytes_down", "down")
    allowance = bytes_column("limit_bytes", "allowance")


RESET_USAGE = Confirmation(
    title="Reset usage?",
    question="The period's traffic goes to the reset log and the counters start again at "
    "zero; limited users get full access back.",
    button="Yes, reset usage",
)
DISABLE = Confirmation(
    title="Disable subscriptions?",
    question="The proxy refuses these users until an operator enables the subscription again.",
    button="Yes, disable",
)


@admin.register(Subscription)
class SubscriptionAdmin(UserLookupMixin, AuditedActionsMixin, admin.ModelAdmin):
    list_display = ["user_link", "plan_status", "usage", "expires", "next_reset"]
    list_filter = ["status", "is_current", "plan"]
    search_fields = ["plan__name"]
    list_select_related = ["plan"]
    action_form = SubscriptionActionForm
    actions = ["extend", "top_up", "reset_usage", "switch", "queue_next", "disable", "enable"]
    inlines = [ResetInline, HistoryInline]
    fieldsets = (
        (
            None,
            {
                "fields": [
                    "user_link",
                    "plan",
                    "status",
                    "is_current",
                    "usage",
                    "started",
                    "expires",
                    "next_reset",
                    "hold_until",
                ]
            },
        ),
        (
            "Traffic",
            {"fields": ["up", "down", "allowance", "top_ups", "lifetime_up", "lifetime_down"]},
        ),
        ("Record", {"fields": ["period_started", "created", "updated"]}),
    )
    readonly_fields = [
        "user_link",
        "plan",
        "status",
        "is_current",
        "usage",
        "started",
        "expires",
        "next_reset",
        "hold_until",
        "up",
        "down",
        "allowance",
        "top_ups",
        "lifetime_up",
        "lifetime_down",
        "period_started",
        "created",
        "updated",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Subscriptions are created by plan_assign (the "Assign plan" action on users).
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deleting would leave restrictions, claims and history pointing at nothing;
        # "Disable" is the operator's way to end a subscription.
        return False

    @admin.display(description="used / limit")
    def usage(self, obj: Subscription) -> str:
        return subscription_usage_bar(obj)

    @admin.display(description="plan · status", ordering="plan__name")
    def plan_status(self, obj: Subscription) -> SafeString:
        current = "" if obj.is_current else " (past)"
        return format_html(
            '{}<br><span class="gp-muted">{}{}</span>',
            obj.plan.name,
            obj.get_status_display(),
            current,
        )

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj: Subscription) -> SafeString | str:
        return when(obj.expires_at) if obj.expires_at else "never"

    started = time_column("started_at", "started", sortable=True)
    next_reset = time_column("next_reset_at", "next reset", sortable=True)
    hold_until = time_column("hold_deadline", "on hold until")
    period_started = time_column("period_started_at", "period started")
    created = time_column("created_at", "created")
    updated = time_column("updated_at", "last changed")
    up = bytes_column("bytes_up", "up (this period)")
    down = bytes_column("bytes_down", "down (this period)")
    allowance = bytes_column("traffic_limit_bytes", "allowance (this period)")
    top_ups = bytes_column("topup_bytes", "top-ups (this period)")
    lifetime_up = bytes_column("lifetime_bytes_up", "lifetime up")
    lifetime_down = bytes_column("lifetime_bytes_down", "lifetime down")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Every field is read-only: changes go through the actions, so no Save buttons.
        context = {
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.action(description="Extend by N days")
    def extend(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        days, by = self.read_input(request, chosen_days), acting_operator(request)
        if days is not None:
            self.run_each(
                request,
                self.with_users(queryset),
                lambda sub: services.subscription_extend(subscription=sub, days=days, by=by),
                log=f"Extended by {days} day(s).",
                done=f"Extended {{count}} subscription(s) by {days} day(s).",
            )

    @admin.action(description="Top up this period by an amount")
    def top_up(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        amount, by = self.read_input(request, chosen_top_up), acting_operator(request)
        if amount is not None:
            self.run_each(
                request,
                self.with_users(queryset),
                lambda sub: services.subscription_top_up(subscription=sub, bytes_=amount, by=by),
                log=f"Topped up by {human_bytes(amount)}.",
                done=f"Topped up {{count}} subscription(s) by {human_bytes(amount)}.",
            )

    @admin.action(description="Reset usage (closes the period now)")
    def reset_usage(
        self, request: HttpRequest, queryset: QuerySet[Subscription]
    ) -> HttpResponse | None:
        subs, by = self.with_users(queryset), acting_operator(request)
        if page := self.confirm(request, subs, RESET_USAGE):
            return page
        self.run_each(
            request,
            subs,
            lambda sub: services.subscription_reset_usage(subscription=sub, by=by),
            log="Reset usage.",
            done="Reset usage of {count} subscription(s).",
        )
        return None

    @admin.action(description="Switch to the chosen plan (keeps usage)")
    def switch(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> HttpResponse | None:
        plan, by = self.read_input(request, chosen_plan), acting_operator(request)
        if plan is None:
            return None
        subs = self.with_users(queryset)
        confirmation = Confirmation(
            title=f"Switch to {plan.name}?",
            question=f"These subscriptions move to {plan.name} now: its limit, speed and "
            "expiry apply from the original start; usage is kept.",
            button=f"Yes, switch to {plan.name}",
        )
        if page := self.confirm(request, subs, confirmation):
            return page
        self.run_each(
            request,
            subs,
            lambda sub: services.subscription_switch(subscription=sub, plan=plan, by=by),
            log=f"Switched to {plan.name}.",
            done=f"Switched {{count}} subscription(s) to {plan.name}.",
        )
        return None

    @admin.action(description="Queue the chosen plan as the next one")
    def queue_next(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        plan, by = self.read_input(request, chosen_plan), acting_operator(request)
        if plan is not None:
            self.run_each(
                request,
                self.with_users(queryset),
                lambda sub: services.plan_queue(user_id=sub.user_id, plan=plan, by=by),
                log=f"Queued {plan.name} as the next plan.",
                done=f"Queued {plan.name} for {{count}} user(s).",
            )

    @admin.action(description="Disable (the proxy refuses the user)")
    def disable(
        self, request: HttpRequest, queryset: QuerySet[Subscription]
    ) -> HttpResponse | None:
        subs, by = self.with_users(queryset), acting_operator(request)
        if page := self.confirm(request, subs, DISABLE):
            return page
        self.run_each(
            request,
            subs,
            lambda sub: services.subscription_disable(subscription=sub, reason="disabled", by=by),
            log="Disabled.",
            done="Disabled {count} subscription(s).",
        )
        return None

    @admin.action(description="Enable (undo disable)")
    def enable(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        by = acting_operator(request)
        self.run_each(
            request,
            self.with_users(queryset),
            lambda sub: services.subscription_enable(subscription=sub, by=by),
            log="Enabled.",
            done="Enabled {count} subscription(s).",
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services and the pipeline: operators look, never edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class InternalAdmin(ReadOnlyAdmin):
    """Pipeline bookkeeping: for superusers only, listed under "Internals"."""

    internal = True

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_active and request.user.is_superuser


MAX_EXPORT_DAYS = 400
# Users a search may narrow an export to (their ids go into one IN list).
MAX_EXPORT_USERS = 5000


class UsageExportForm(forms.Form):
    """The days (both included) and, optionally, the users of a usage-per-day export."""

    first = forms.DateField(required=False, help_text="First day (YYYY-MM-DD).")
    last = forms.DateField(required=False, help_text="Last day (YYYY-MM-DD); default today.")
    q = forms.CharField(required=False, help_text="Only users whose e-mail or username has this.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        last = data.get("last") or day_start().date()
        first = data.get("first") or last - timedelta(days=29)
        if first > last:
            raise ValidationError("The first day must not be after the last day.")
        if (last - first).days >= MAX_EXPORT_DAYS:
            raise ValidationError(f"Export at most {MAX_EXPORT_DAYS} days at a time.")
        data.update(first=first, last=last)
        return data


@admin.register(UsageBucket)
class UsageBucketAdmin(UserLookupMixin, ReadOnlyAdmin):
    list_display = ["hour_local", "user_link", "plan", "up", "down", "total"]
    date_hierarchy = "hour"
    list_select_related = ["subscription__plan"]
    change_list_template = "admin/plans/usagebucket/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "export-daily.csv",
            self.admin_site.admin_view(self.export_daily_view),
            name="plans_usagebucket_export_daily",
        )
        return [export, *super().get_urls()]

    def export_daily_view(self, request: HttpRequest) -> HttpResponseBase:
        """Traffic per day, user and plan as CSV (?first=&last=&q=, default 30 days)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsageExportForm(request.GET)
        if not form.is_valid():
            problems = []
            for field, errors in form.errors.items():
                text = " ".join(str(error) for error in errors)
                problems.append(text if field == "__all__" else f"{field}: {text}")
            return HttpResponseBadRequest(
                "Cannot export: " + "; ".join(problems) + "\n",
                content_type="text/plain; charset=utf-8",
            )
        first, last, term = (
            form.cleaned_data["first"],
            form.cleaned_data["last"],
            form.cleaned_data["q"],
        )
        user_ids = user_ids_matching(term=term, limit=MAX_EXPORT_USERS) if term else None
        if user_ids is not None and len(user_ids) > MAX_EXPORT_USERS:
            return HttpResponseBadRequest(
                f"Cannot export: “{term}” matches more than {MAX_EXPORT_USERS} users; "
                "narrow it, or leave it out to export everyone.\n",
                content_type="text/plain; charset=utf-8",
            )
        rows = usage_daily_rows(first=first, last=last, user_ids=user_ids)
        return csv_response(f"usage-per-day-{first}-to-{last}.csv", USAGE_DAILY_HEADER, rows)

    @admin.display(description="plan", ordering="subscription__plan__name")
    def plan(self, obj: UsageBucket) -> str:
        return obj.subscription.plan.name

    hour_local = time_column("hour", "hour", sortable=True)
    up = bytes_column("bytes_up", "up", sortable=True)
    down = bytes_column("bytes_down", "down", sortable=True)

    @admin.display(description="total")
    def total(self, obj: UsageBucket) -> str:
        return human_bytes(obj.bytes_up + obj.bytes_down)


@admin.register(FreePlanClaim)
class FreePlanClaimAdmin(UserLookupMixin, admin.ModelAdmin):
    """Deleting a claim lets the user claim a free plan once more."""

    list_display = ["user_link", "plan", "claimed"]
    list_select_related = ["plan"]
    claimed = time_column("claimed_at", "claimed", sortable=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Claims are written by plan_claim_free together with the subscription.
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SubscriptionEvent)
class SubscriptionEventAdmin(UserLookupMixin, ReadOnlyAdmin):
    list_display = ["at_local", "user_link", "plan", "kind", "message"]
    list_filter = ["kind"]
    search_fields = ["message"]
    date_hierarchy = "at"
    list_select_related = ["subscription__plan"]
    fields = readonly_fields = (
        "at",
        "user_link",
        "subscription_link",
        "kind",
        "message",
        "details",
    )

    at_local = time_column("at", "at", sortable=True)

    @admin.display(description="plan", ordering="subscription__plan__name")
    def plan(self, obj: SubscriptionEvent) -> str:
        return obj.subscription.plan.name

    @admin.display(description="subscription")
    def subscription_link(self, obj: SubscriptionEvent) -> SafeString:
        url = reverse("admin:plans_subscription_change", args=[obj.subscription_id])
        return format_html('<a href="{}">{} subscription</a>', url, obj.subscription.plan.name)

    @admin.display(description="details")
    def details(self, obj: SubscriptionEvent) -> str:
        return event_details(obj)


@admin.register(UsageReset)
class UsageResetAdmin(UserLookupMixin, ReadOnlyAdmin):
    list_display = ["user_link", "period", "up", "down", "how"]
    list_filter = ["manual", "was_limited"]

    up = bytes_column("bytes_up", "up", sortable=True)
    down = bytes_column("bytes_down", "down", sortable=True)

    @admin.display(description="period", ordering="period_end")
    def period(self, obj: UsageReset) -> SafeString:
        return format_html("{} → {}", when(obj.period_start), when(obj.period_end))

    @admin.display(description="reset")
    def how(self, obj: UsageReset) -> str:
        how = "by an operator" if obj.manual else "cycle"
        return f"{how} · was limited" if obj.was_limited else how


@admin.register(QueuedPlan)
class QueuedPlanAdmin(UserLookupMixin, admin.ModelAdmin):
    list_display = ["user_link", "plan", "queued", "queued_by"]
    list_select_related = ["plan"]
    search_fields = ["plan__name"]
    queued = time_column("queued_at", "queued", sortable=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Queue through the subscription action, which takes over at once when due.
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: QueuedPlan) -> None:
        services.plan_queue_cancel(user_id=obj.user_id, by=acting_operator(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[QueuedPlan]) -> None:
        for queued in queryset:
            services.plan_queue_cancel(user_id=queued.user_id, by=acting_operator(request))


@admin.register(Notification)
class NotificationAdmin(UserLookupMixin, ReadOnlyAdmin):
    list_display = ["created", "user_link", "what", "emailed", "error"]
    list_filter = ["kind"]
    created = time_column("created_at", "created", sortable=True)
    emailed = time_column("emailed_at", "e-mailed")
    error = text_column("email_error", "e-mail error")

    @admin.display(description="reminder", ordering="kind")
    def what(self, obj: Notification) -> str:
        return obj.describe()


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "is_active", "created"]
    list_filter = ["is_active"]
    created = time_column("created_at", "created", sortable=True)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: every notification sent to every endpoint, with its outcome."""

    list_display = [
        "created",
        "endpoint",
        "status",
        "attempts",
        "response_status",
        "error",
        "delivered",
    ]
    list_filter = ["status", "endpoint"]
    list_select_related = ["endpoint"]
    search_fields = ["=event_id"]
    created = time_column("created_at", "created", sortable=True)
    delivered = time_column("delivered_at", "delivered")
    error = text_column("last_error", "last error")


@admin.register(UserRestriction)
class UserRestrictionAdmin(UserLookupMixin, InternalAdmin):
    list_display = ["user_link", "reason", "throttle", "version", "updated"]
    list_filter = ["reason"]
    updated = time_column("updated_at", "updated", sortable=True)

    @admin.display(description="throttled to", ordering="throttle_bps")
    def throttle(self, obj: UserRestriction) -> str:
        return "—" if obj.throttle_bps is None else human_speed(obj.throttle_bps)


@admin.register(OutboxEvent)
class OutboxEventAdmin(InternalAdmin):
    list_display = ["id", "topic", "key", "created", "sent"]
    list_filter = ["topic"]
    search_fields = ["=key", "=event_id"]
    created = time_column("created_at", "created", sortable=True)
    sent = time_column("sent_at", "sent")


@admin.register(TrafficSequence)
class TrafficSequenceAdmin(UserLookupMixin, InternalAdmin):
    list_display = ["instance_id", "user_link", "last_seq", "updated"]
    search_fields = ["instance_id"]
    updated = time_column("updated_at", "updated", sortable=True)
