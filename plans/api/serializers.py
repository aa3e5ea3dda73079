"""Serializers for plans, subscriptions and usage series. Writes go through services."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts import selectors as account_selectors
from plans import selectors as plan_selectors
from plans.models import (
    Feature,
    Plan,
    Subscription,
    SubscriptionEvent,
    SubscriptionStatus,
    UsageReset,
)

# Bounds that keep date arithmetic (expiry = start + days) far from datetime's year 9999.
MAX_DURATION_DAYS = 36_500
MAX_EXTEND_DAYS = 3_650
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1
MAX_FEATURES = 50


class FeatureSerializer(serializers.ModelSerializer):
    # Declared explicitly: features are matched by name, so an existing name is not an error.
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    class Meta:
        model = Feature
        fields = ["name", "description"]


class PlanSerializer(serializers.ModelSerializer):
    # DRF's ListSerializer takes max_length (3.14+); the stubs' __init__ does not list it.
    features = FeatureSerializer(  # type: ignore[call-arg]
        many=True, required=False, max_length=MAX_FEATURES
    )

    class Meta:
        model = Plan
        fields = [
            "id",
            "name",
            "traffic_limit_bytes",
            "duration_days",
            "price",
            "currency",
            "is_free",
            "is_public",
            "max_connections",
            "speed_limit_bps",
            "reset_cycle",
            "reset_every_days",
            "quota_action",
            "throttle_speed_bps",
            "device_limit",
            "start_on_first_use",
            "first_use_deadline_days",
            "features",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "reset_every_days": {"min_value": 1, "max_value": MAX_DURATION_DAYS},
            "throttle_speed_bps": {"min_value": 1, "max_value": MAX_BIGINT},
            "device_limit": {"min_value": 1, "max_value": MAX_INT},
            "first_use_deadline_days": {"min_value": 1, "max_value": MAX_DURATION_DAYS},
            "traffic_limit_bytes": {"min_value": 1, "max_value": MAX_BIGINT},
            "duration_days": {"min_value": 1, "max_value": MAX_DURATION_DAYS},
            "max_connections": {"min_value": 1, "max_value": MAX_INT},
            "speed_limit_bps": {"min_value": 1, "max_value": MAX_BIGINT},
        }

    def validate_features(self, value: list[dict[str, str]]) -> list[dict[str, str]]:
        names = [item["name"] for item in value]
        if len(names) != len(set(names)):
            raise serializers.ValidationError("Each feature may be listed once.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: Plan | None = self.instance
        is_free = attrs.get("is_free", instance.is_free if instance else False)
        price = attrs.get("price", instance.price if instance else 0)
        if is_free and price:
            raise serializers.ValidationError({"price": "A free plan must have a price of 0."})

        def get(name: str) -> Any:
            return attrs.get(name, getattr(instance, name) if instance else None)

        if get("reset_cycle") == "every_n_days" and not get("reset_every_days"):
            raise serializers.ValidationError(
                {"reset_every_days": "The 'every N days' cycle needs N."}
            )
        if get("quota_action") == "throttle" and not get("throttle_speed_bps"):
            raise serializers.ValidationError(
                {"throttle_speed_bps": "Throttling at the quota needs a throttle speed."}
            )
        return attrs


class SubscriptionSerializer(serializers.ModelSerializer):
    plan_name = serializers.CharField(source="plan.name", read_only=True)
    bytes_used = serializers.IntegerField(read_only=True)
    usage_ratio = serializers.FloatField(read_only=True, allow_null=True)
    queued_plan = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = [
            "id",
            "user_id",
            "plan",
            "plan_name",
            "status",
            "is_current",
            "started_at",
            "expires_at",
            "bytes_up",
            "bytes_down",
            "bytes_used",
            "traffic_limit_bytes",
            "topup_bytes",
            "usage_ratio",
            "lifetime_bytes_up",
            "lifetime_bytes_down",
            "period_started_at",
            "next_reset_at",
            "hold_deadline",
            "queued_plan",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_queued_plan(self, obj: Subscription) -> int | None:
        """The plan queued to take over from this subscription, if any."""
        if not obj.is_current:
            return None
        queued = plan_selectors.queued_plan_get(user_id=obj.user_id)
        return queued.plan_id if queued else None


class SubscriptionFilterSerializer(serializers.Serializer):
    """Query parameters of the subscription list."""

    user_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BIGINT)
    plan = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BIGINT)
    status = serializers.ChoiceField(choices=SubscriptionStatus.choices, required=False)
    is_current = serializers.BooleanField(required=False, allow_null=True, default=None)


class SubscriptionAssignSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)
    plan = serializers.PrimaryKeyRelatedField(queryset=Plan.objects.all())

    def validate_user_id(self, value: int) -> int:
        user = account_selectors.user_get(user_id=value)
        if user is None:
            raise serializers.ValidationError("No user with this id.")
        if not user.is_active:
            raise serializers.ValidationError("This user is deactivated.")
        return value


class SubscriptionExtendSerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=MAX_EXTEND_DAYS)


class ClaimFreeSerializer(serializers.Serializer):
    plan = serializers.PrimaryKeyRelatedField(
        queryset=Plan.objects.filter(is_public=True),
        required=False,
        help_text="A public free plan; the default free plan when omitted.",
    )


class UsageQuerySerializer(serializers.Serializer):
    """`from`/`to` (ISO 8601, [from, to)) and `granularity`; `from` defaults to the start
    of the current subscription, so the default series adds up to its totals."""

    granularity = serializers.ChoiceField(choices=["hour", "day"], default="hour")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # "from" is a Python keyword, so these are added here rather than declared.
        fields["from"] = serializers.DateTimeField(required=False)
        fields["to"] = serializers.DateTimeField(required=False)
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"to": "`to` must be later than `from`."})
        return attrs


class UsagePointSerializer(serializers.Serializer):
    period = serializers.DateTimeField()
    bytes_up = serializers.IntegerField()
    bytes_down = serializers.IntegerField()
    bytes_total = serializers.IntegerField()


class UsageTotalSerializer(serializers.Serializer):
    bytes_up = serializers.IntegerField()
    bytes_down = serializers.IntegerField()
    bytes_total = serializers.IntegerField()


class UsageSeriesSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    granularity = serializers.ChoiceField(choices=["hour", "day"])
    points = UsagePointSerializer(many=True)
    total = UsageTotalSerializer()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # The window as applied, named like the query parameters; null = open-ended.
        fields["from"] = serializers.DateTimeField(allow_null=True)
        fields["to"] = serializers.DateTimeField(allow_null=True)
        return fields


class SubscriptionEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = SubscriptionEvent
        fields = ["id", "subscription", "at", "kind", "message", "data"]
        read_only_fields = fields


class UsageResetSerializer(serializers.ModelSerializer):
    class Meta:
        model = UsageReset
        fields = [
            "id",
            "subscription",
            "period_start",
            "period_end",
            "bytes_up",
            "bytes_down",
            "limit_bytes",
            "was_limited",
            "manual",
        ]
        read_only_fields = fields


class SubscriptionHistorySerializer(serializers.Serializer):
    subscription = SubscriptionSerializer()
    events = SubscriptionEventSerializer(many=True)
    resets = UsageResetSerializer(many=True)


class TopUpSerializer(serializers.Serializer):
    bytes = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT // 2)


class PlanChoiceSerializer(serializers.Serializer):
    plan = serializers.PrimaryKeyRelatedField(queryset=Plan.objects.all())


class QueueSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)
    plan = serializers.PrimaryKeyRelatedField(queryset=Plan.objects.all())

    def validate_user_id(self, value: int) -> int:
        return SubscriptionAssignSerializer().validate_user_id(value)


class MyQueueSerializer(serializers.Serializer):
    plan = serializers.PrimaryKeyRelatedField(
        queryset=plan_selectors.plan_list_self_queueable(),
        help_text=(
            "A public plan without a price that is not a free plan (free plans are claimed "
            "once through claim-free; paid plans are queued by operators)."
        ),
    )


class SubscriptionUrlSerializer(serializers.Serializer):
    url = serializers.URLField()
