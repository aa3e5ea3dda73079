"""Plans DB models. Users live on the accounts DB, so rows here hold `user_id` only."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from goproxy_site.formatting import user_label
from goproxy_site.outbox import AbstractOutboxEvent

CURRENCY_PATTERN = r"^[A-Z]{3}$"


class Feature(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ResetCycle(models.TextChoices):
    NONE = "none", "Never"
    DAILY = "daily", "Daily (calendar)"
    WEEKLY = "weekly", "Weekly (calendar, Mondays)"
    MONTHLY = "monthly", "Monthly (calendar, the 1st)"
    EVERY_N_DAYS = "every_n_days", "Every N days from the start"


class QuotaAction(models.TextChoices):
    CUT = "cut", "Cut off"
    THROTTLE = "throttle", "Throttle"


class Plan(models.Model):
    """A traffic plan. Null limits mean unlimited."""

    name = models.CharField(max_length=100, unique=True)
    traffic_limit_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Bytes up + down allowed per subscription; empty = unlimited.",
    )
    duration_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Days a subscription lasts; empty = no expiry.",
    )
    price = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("0"), validators=[MinValueValidator(0)]
    )
    currency = models.CharField(
        max_length=3,
        default="USD",
        validators=[RegexValidator(CURRENCY_PATTERN, "Use an ISO 4217 code such as USD.")],
    )
    is_free = models.BooleanField(default=False, help_text="Users may claim a free plan once.")
    is_public = models.BooleanField(default=True, help_text="Shown in the portal's catalogue.")
    max_connections = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Concurrent proxy connections per user; empty = unlimited.",
    )
    speed_limit_bps = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Bytes per second in each direction; empty = unlimited.",
    )
    features = models.ManyToManyField(Feature, blank=True, related_name="plans")
    reset_cycle = models.CharField(
        max_length=16,
        choices=ResetCycle.choices,
        default=ResetCycle.NONE,
        help_text="When the period usage goes back to zero (calendar cycles use PLANS_TIME_ZONE).",
    )
    reset_every_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="N for the 'every N days from the start' cycle.",
    )
    quota_action = models.CharField(
        max_length=16,
        choices=QuotaAction.choices,
        default=QuotaAction.CUT,
        help_text="At the quota: refuse the user (cut) or slow them down (throttle).",
    )
    throttle_speed_bps = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Bytes per second in each direction once throttled.",
    )
    device_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Distinct client IP addresses in use at once; empty = unlimited.",
    )
    start_on_first_use = models.BooleanField(
        default=False, help_text="The subscription waits on hold until the first proxy use."
    )
    first_use_deadline_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="An on-hold subscription starts anyway after this many days.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["price", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(traffic_limit_bytes__isnull=True) | Q(traffic_limit_bytes__gt=0),
                name="plans_plan_limit_positive",
            ),
            models.CheckConstraint(
                condition=Q(duration_days__isnull=True) | Q(duration_days__gt=0),
                name="plans_plan_duration_positive",
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="plans_plan_price_nonneg"),
            models.CheckConstraint(
                condition=Q(is_free=False) | Q(price=0), name="plans_plan_free_has_no_price"
            ),
            models.CheckConstraint(
                condition=Q(speed_limit_bps__isnull=True) | Q(speed_limit_bps__gt=0),
                name="plans_plan_speed_positive",
            ),
            models.CheckConstraint(
                condition=Q(max_connections__isnull=True) | Q(max_connections__gt=0),
                name="plans_plan_connections_positive",
            ),
            models.CheckConstraint(
                condition=~Q(reset_cycle="every_n_days") | Q(reset_every_days__gt=0),
                name="plans_plan_every_n_days_has_n",
                violation_error_message="The 'every N days' cycle needs N.",
            ),
            models.CheckConstraint(
                condition=~Q(quota_action="throttle") | Q(throttle_speed_bps__gt=0),
                name="plans_plan_throttle_has_speed",
                violation_error_message="Throttling at the quota needs a throttle speed.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if self.reset_cycle == ResetCycle.EVERY_N_DAYS and not self.reset_every_days:
            errors["reset_every_days"] = "The 'every N days' cycle needs N."
        if self.quota_action == QuotaAction.THROTTLE and not self.throttle_speed_bps:
            errors["throttle_speed_bps"] = "Throttling at the quota needs a throttle speed."
        if errors:
            raise ValidationError(errors)

    @property
    def throttles(self) -> bool:
        return self.quota_action == QuotaAction.THROTTLE and bool(self.throttle_speed_bps)


class SubscriptionStatus(models.TextChoices):
    ON_HOLD = "on_hold", "On hold"
    ACTIVE = "active", "Active"
    LIMITED = "limited", "Limited"
    EXPIRED = "expired", "Expired"
    DISABLED = "disabled", "Disabled"


class Subscription(models.Model):
    """A user's affiliation with a plan. At most one row per user is current."""

    user_id = models.BigIntegerField(db_index=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    is_current = models.BooleanField(default=True)
    started_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    bytes_up = models.BigIntegerField(default=0, help_text="Client → destination bytes.")
    bytes_down = models.BigIntegerField(default=0, help_text="Destination → client bytes.")
    traffic_limit_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="This period's allowance: the plan's limit when assigned plus top-ups; "
        "empty = unlimited.",
    )
    topup_bytes = models.BigIntegerField(
        default=0, help_text="Bytes added to this period's allowance by top-ups."
    )
    lifetime_bytes_up = models.BigIntegerField(default=0, help_text="Never reset.")
    lifetime_bytes_down = models.BigIntegerField(default=0, help_text="Never reset.")
    period_started_at = models.DateTimeField(null=True, blank=True)
    next_reset_at = models.DateTimeField(null=True, blank=True, db_index=True)
    hold_deadline = models.DateTimeField(
        null=True, blank=True, help_text="An on-hold subscription starts at this time anyway."
    )
    # The span in which this was the user's current subscription: traffic is billed to the
    # subscription current when it was moved, however late the delta arrives.
    current_from = models.DateTimeField(
        default=timezone.now, help_text="When this became the user's current subscription."
    )
    current_until = models.DateTimeField(
        null=True, blank=True, help_text="When another subscription took over (empty: current)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user_id"],
                condition=Q(is_current=True),
                name="plans_subscription_one_current_per_user",
                violation_error_message="This user already has a current subscription.",
            ),
            models.CheckConstraint(
                condition=Q(bytes_up__gte=0) & Q(bytes_down__gte=0),
                name="plans_subscription_bytes_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(traffic_limit_bytes__isnull=True) | Q(traffic_limit_bytes__gt=0),
                name="plans_subscription_limit_positive",
            ),
            models.CheckConstraint(
                condition=Q(topup_bytes__gte=0)
                & Q(lifetime_bytes_up__gte=0)
                & Q(lifetime_bytes_down__gte=0),
                name="plans_subscription_lifetime_nonneg",
            ),
        ]

    def __str__(self) -> str:
        return f"{user_label(self)} — {self.plan.name} ({self.get_status_display().lower()})"

    @property
    def bytes_used(self) -> int:
        return self.bytes_up + self.bytes_down

    @property
    def is_exhausted(self) -> bool:
        return self.traffic_limit_bytes is not None and self.bytes_used >= self.traffic_limit_bytes

    @property
    def lifetime_bytes_used(self) -> int:
        return self.lifetime_bytes_up + self.lifetime_bytes_down

    @property
    def is_throttled(self) -> bool:
        return self.status == SubscriptionStatus.LIMITED and self.plan.throttles

    @property
    def usage_ratio(self) -> float | None:
        if not self.traffic_limit_bytes:
            return None
        return min(self.bytes_used / self.traffic_limit_bytes, 1.0)


class UsageBucket(models.Model):
    """Hourly usage of one subscription."""

    # Indexed by (user_id, hour) and (subscription, hour) only: every index is written by
    # each new hour's insert of every active user.
    user_id = models.BigIntegerField()
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="usage_buckets", db_index=False
    )
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    bytes_up = models.BigIntegerField(default=0)
    bytes_down = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["hour"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "hour"], name="plans_usagebucket_unique_hour"
            ),
            models.CheckConstraint(
                condition=Q(bytes_up__gte=0) & Q(bytes_down__gte=0),
                name="plans_usagebucket_bytes_nonneg",
            ),
        ]
        indexes = [models.Index(fields=["user_id", "hour"], name="plans_usage_user_hour")]

    def __str__(self) -> str:
        return f"{user_label(self)} @ {self.hour:%Y-%m-%d %H:00}"


class FreePlanClaim(models.Model):
    """Records that a person claimed a free plan: once per account (user_id) and once per
    e-mail address (email_hash), and it outlives the account.

    `email_hash` is plans.claim_keys.email_claim_hash of the address the claim was made
    with, so no address is kept in clear. It is empty only on claims made before it
    existed whose account was already gone, or whose address another claim had.
    """

    user_id = models.BigIntegerField(unique=True)
    email_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="free_claims")
    claimed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["email_hash"], name="plans_freeplanclaim_email_hash_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{user_label(self)} claimed {self.plan.name}"


class RestrictionReason(models.TextChoices):
    """Why the proxy refuses a user; the codes match goproxy_site.events.schemas.REASON_*."""

    LIMIT = "limit", "Traffic limit reached"
    NO_PLAN = "no_plan", "No active plan"
    EXPIRED = "expired", "Plan expired"
    DISABLED = "disabled", "Plan disabled"


class UserRestriction(models.Model):
    """The proxy-facing restriction state of one user (empty reason = not restricted).

    Every change bumps `version` and publishes one event through the outbox, so a
    restriction is announced once per transition, and proxies ignore stale events.
    Proxies load the restricted rows at start-up.
    """

    user_id = models.BigIntegerField(unique=True)
    reason = models.CharField(max_length=16, choices=RestrictionReason.choices, blank=True)
    throttle_bps = models.BigIntegerField(
        null=True, blank=True, help_text="Speed the proxy holds the user to (not restricted)."
    )
    version = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["reason"], name="plans_restriction_reason")]

    def __str__(self) -> str:
        state = self.get_reason_display().lower() if self.reason else "not restricted"
        if not self.reason and self.throttle_bps is not None:
            state = "throttled"
        return f"{user_label(self)}: {state} (v{self.version})"

    @property
    def is_restricted(self) -> bool:
        return bool(self.reason)


class TrafficSequence(models.Model):
    """High-water mark of traffic deltas applied per (proxy instance, user).

    Written in the same transaction as the bytes, so a redelivered delta (seq <= mark)
    is recognised and skipped: each delta counts exactly once.
    """

    instance_id = models.CharField(max_length=100)
    user_id = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    # What the mark was before the batch that last raised it: the batch's upsert returns
    # it, so checking and raising a mark is one atomic step even when two workers apply
    # the same deltas at once (after a rebalance).
    previous_seq = models.BigIntegerField(default=0)
    # Not indexed: the daily prune scans the table, and an unindexed column lets every
    # batch update its marks in place (PostgreSQL HOT updates).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instance_id", "user_id"], name="plans_trafficsequence_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}/{user_label(self)} @ {self.last_seq}"


class UnplannedUsage(models.Model):
    """Hourly bytes of users who had no current subscription when the traffic arrived."""

    user_id = models.BigIntegerField()
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    bytes_up = models.BigIntegerField(default=0)
    bytes_down = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["hour"]
        constraints = [
            models.UniqueConstraint(fields=["user_id", "hour"], name="plans_unplanned_unique"),
        ]

    def __str__(self) -> str:
        return f"{user_label(self)} without plan @ {self.hour:%Y-%m-%d %H:00}"


class OutboxEvent(AbstractOutboxEvent):
    """An event committed with the plans-DB change it announces, relayed to Kafka later."""


# ---------------------------------------------------------------------------------------
# Lifecycle: history, reset records, queued renewals, notifications, webhooks,
# subscription URLs.
# ---------------------------------------------------------------------------------------
class SubscriptionEventKind(models.TextChoices):
    ASSIGNED = "assigned", "Assigned"
    ON_HOLD = "on_hold", "Put on hold until first use"
    STARTED = "started", "Started"
    RESET = "reset", "Period reset"
    LIMITED = "limited", "Quota reached (cut)"
    THROTTLED = "throttled", "Quota reached (throttled)"
    LIFTED = "lifted", "Limit lifted"
    EXPIRED = "expired", "Expired"
    DISABLED = "disabled", "Disabled"
    ENABLED = "enabled", "Enabled"
    EXTENDED = "extended", "Extended"
    TOPPED_UP = "topped_up", "Topped up"
    SWITCHED = "switched", "Plan switched"
    QUEUED = "queued", "Next plan queued"
    QUEUE_CANCELLED = "queue_cancelled", "Queued plan cancelled"
    RENEWED = "renewed", "Queued plan took over"
    REPLACED = "replaced", "Replaced by a new assignment"
    NOTIFIED = "notified", "Notification sent"


class SubscriptionEvent(models.Model):
    """One entry of a subscription's history; written by the service that made the change."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="history")
    user_id = models.BigIntegerField(db_index=True)
    kind = models.CharField(max_length=20, choices=SubscriptionEventKind.choices)
    at = models.DateTimeField(db_index=True)
    message = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["subscription", "at"], name="plans_subevent_sub_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.get_kind_display()} ({user_label(self)})"


class UsageReset(models.Model):
    """The reset log: one closed period of a subscription with what it used.

    Traffic that happened inside a closed period but arrives late is added here, not to
    the new period, so every byte counts to the period it was moved in.
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="resets")
    user_id = models.BigIntegerField(db_index=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(help_text="The boundary; traffic from here on is new.")
    bytes_up = models.BigIntegerField(default=0)
    bytes_down = models.BigIntegerField(default=0)
    limit_bytes = models.BigIntegerField(null=True, blank=True)
    was_limited = models.BooleanField(default=False)
    manual = models.BooleanField(default=False, help_text="Reset by an operator, not a cycle.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["period_end", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(bytes_up__gte=0) & Q(bytes_down__gte=0),
                name="plans_usagereset_bytes_nonneg",
            ),
        ]

    def __str__(self) -> str:
        return f"{user_label(self)}: period ending {self.period_end:%Y-%m-%d %H:%M}"


class QueuedPlan(models.Model):
    """The next plan of a user, taking over when the current one expires or is exhausted."""

    user_id = models.BigIntegerField(unique=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="queued")
    queued_at = models.DateTimeField(auto_now_add=True)
    queued_by = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"{user_label(self)} next: {self.plan.name}"


class NotificationKind(models.TextChoices):
    QUOTA = "quota", "Quota threshold"
    EXPIRY = "expiry", "Before expiry"


def hours_in_words(hours: int) -> str:
    """A reminder lead time: whole days as days ("3 days"), anything else as hours."""
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


class Notification(models.Model):
    """A notification decided once per (subscription, period, kind, threshold)."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="notifications"
    )
    user_id = models.BigIntegerField(db_index=True)
    kind = models.CharField(max_length=10, choices=NotificationKind.choices)
    threshold = models.PositiveIntegerField(
        help_text="Percent of the quota, or hours before expiry."
    )
    period_start = models.DateTimeField(help_text="The period (or expiry) it belongs to.")
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "kind", "threshold", "period_start"],
                name="plans_notification_once_per_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{user_label(self)}: {self.describe()}"

    def describe(self) -> str:
        """The reminder in words: "80 % of the traffic used", "ends in 2 hours"."""
        if self.kind == NotificationKind.QUOTA:
            return f"{self.threshold} % of the traffic used"
        return f"ends in {hours_in_words(self.threshold)}"


class WebhookEndpoint(models.Model):
    """An operator-configured URL that receives lifecycle notifications, signed."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="Key of the HMAC-SHA256 signature header.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """The delivery log: one notification to one endpoint, with every attempt's outcome."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    notification = models.ForeignKey(
        Notification, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    event_id = models.UUIDField(unique=True)
    payload = models.TextField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.endpoint} {self.event_id} ({self.status})"


class SubscriptionToken(models.Model):
    """The private token of a user's subscription URL (client apps poll it)."""

    user_id = models.BigIntegerField(unique=True)
    token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"user {self.user_id} subscription URL"


class ControllerHeartbeat(models.Model):
    """What one plan-controller worker last said about its backlog, every few seconds.

    The web reads it (admin index, /healthz) because the worker's own metrics endpoint is
    in another process; a heartbeat older than a minute is a worker that is gone.
    """

    worker = models.CharField(max_length=200, unique=True)
    lag_events = models.BigIntegerField(
        default=0, help_text="Messages of its partitions not yet applied (approximate on tansu)."
    )
    lag_seconds = models.FloatField(
        default=0, help_text="Age of the oldest traffic delta it had not yet applied."
    )
    events_per_second = models.FloatField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["worker"]

    def __str__(self) -> str:
        return f"{self.worker}: {self.lag_seconds:.1f} s behind"


class QuotaGrantLedger(models.Model):
    """Bytes of one user's quota that one proxy instance holds (its grant).

    Written by the plan-controller in the same transaction as the traffic it accounts for:
    a delta from the instance takes its bytes off what it holds, a request sets what it
    holds to what it reports and adds the new grant, a return sets it to zero. What all
    instances hold (unexpired) plus what the subscription used never exceeds its limit
    (plus PLANS_GRANT_TOLERANCE_BYTES), so no proxy can forward a byte past the quota.
    """

    instance_id = models.CharField(max_length=100)
    user_id = models.BigIntegerField(db_index=True)
    held_bytes = models.BigIntegerField(default=0)
    request_id = models.BigIntegerField(default=0, help_text="The last request answered.")
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="What it holds counts until then (a dead proxy's too)."
    )
    granted_bytes = models.BigIntegerField(default=0, help_text="All bytes ever granted.")
    returned_bytes = models.BigIntegerField(default=0, help_text="All bytes given back.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id", "instance_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance_id", "user_id"], name="plans_quotagrantledger_unique"
            ),
            models.CheckConstraint(
                condition=Q(held_bytes__gte=0), name="plans_quotagrantledger_held_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}/user {self.user_id}: {self.held_bytes} B held"
        return f"{user_label(self)} subscription URL"
