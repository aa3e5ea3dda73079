"""Plans DB models. Users live on the accounts DB, so rows here hold `user_id` only."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

CURRENCY_PATTERN = r"^[A-Z]{3}$"


class Feature(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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
        ]

    def __str__(self) -> str:
        return self.name


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
        null=True, blank=True, help_text="The plan's limit when assigned; empty = unlimited."
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
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} on {self.plan_id} ({self.status})"

    @property
    def bytes_used(self) -> int:
        return self.bytes_up + self.bytes_down

    @property
    def is_exhausted(self) -> bool:
        return self.traffic_limit_bytes is not None and self.bytes_used >= self.traffic_limit_bytes

    @property
    def usage_ratio(self) -> float | None:
        if not self.traffic_limit_bytes:
            return None
        return min(self.bytes_used / self.traffic_limit_bytes, 1.0)


class UsageBucket(models.Model):
    """Hourly usage of one subscription."""

    user_id = models.BigIntegerField(db_index=True)
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="usage_buckets"
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
        return f"user {self.user_id} @ {self.hour:%Y-%m-%d %H:00}"


class FreePlanClaim(models.Model):
    """Records that a user claimed a free plan; the unique user_id makes it once per user."""

    user_id = models.BigIntegerField(unique=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="free_claims")
    claimed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"user {self.user_id} claimed {self.plan_id}"


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
    version = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["reason"], name="plans_restriction_reason")]

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.reason or 'not restricted'} (v{self.version})"

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
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instance_id", "user_id"], name="plans_trafficsequence_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}/user {self.user_id} @ {self.last_seq}"


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
        return f"user {self.user_id} without plan @ {self.hour:%Y-%m-%d %H:00}"


class OutboxEvent(models.Model):
    """An event committed with the plans-DB change it announces, relayed to Kafka later."""

    event_id = models.UUIDField(unique=True)
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=100)
    payload = models.TextField(help_text="The event's JSON envelope, as sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"outbox {self.event_id} -> {self.topic}"
