"""Reads on the plans DB."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal, TypedDict

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from .models import FreePlanClaim, Plan, Subscription, UsageBucket

Granularity = Literal["hour", "day"]


class UsagePoint(TypedDict):
    period: datetime
    bytes_up: int
    bytes_down: int


def plan_list(*, public_only: bool = False) -> QuerySet[Plan]:
    qs = Plan.objects.prefetch_related("features")
    return qs.filter(is_public=True) if public_only else qs


def subscription_get_current(*, user_id: int) -> Subscription | None:
    return (
        Subscription.objects.select_related("plan").filter(user_id=user_id, is_current=True).first()
    )


def subscriptions_current_by_user(*, user_ids: Iterable[int]) -> dict[int, Subscription]:
    """Current subscriptions for many users in one query (for admin/API lists)."""
    ids = list(user_ids)
    if not ids:
        return {}
    qs = Subscription.objects.select_related("plan").filter(user_id__in=ids, is_current=True)
    return {s.user_id: s for s in qs}


def user_ids_with_status(*, statuses: Iterable[str]) -> list[int]:
    return list(
        Subscription.objects.filter(is_current=True, status__in=list(statuses)).values_list(
            "user_id", flat=True
        )
    )


def user_ids_near_limit(*, ratio: float) -> list[int]:
    """Users whose current usage is at least `ratio` of their limit."""
    return list(
        Subscription.objects.filter(is_current=True, traffic_limit_bytes__isnull=False)
        .annotate(used=F("bytes_up") + F("bytes_down"))
        .filter(used__gte=F("traffic_limit_bytes") * ratio)
        .values_list("user_id", flat=True)
    )


def user_ids_expiring(*, within: timedelta) -> list[int]:
    now = timezone.now()
    return list(
        Subscription.objects.filter(
            is_current=True, expires_at__gte=now, expires_at__lt=now + within
        ).values_list("user_id", flat=True)
    )


def user_ids_with_current_subscription() -> list[int]:
    return list(Subscription.objects.filter(is_current=True).values_list("user_id", flat=True))


def free_plan_claimable(*, user_id: int) -> bool:
    return not FreePlanClaim.objects.filter(user_id=user_id).exists()


def usage_for_user(
    *,
    user_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    granularity: Granularity = "hour",
) -> list[UsagePoint]:
    """Usage of one user per hour or day in [start, end), across all their subscriptions."""
    if granularity not in ("hour", "day"):
        raise ValueError(f"granularity must be 'hour' or 'day', not {granularity!r}")
    qs = UsageBucket.objects.filter(user_id=user_id)
    if start is not None:
        qs = qs.filter(hour__gte=start)
    if end is not None:
        qs = qs.filter(hour__lt=end)
    trunc = TruncHour("hour") if granularity == "hour" else TruncDay("hour")
    rows = (
        qs.annotate(period=trunc)
        .values("period")
        .annotate(bytes_up=Sum("bytes_up"), bytes_down=Sum("bytes_down"))
        .order_by("period")
    )
    return [
        UsagePoint(period=r["period"], bytes_up=r["bytes_up"], bytes_down=r["bytes_down"])
        for r in rows
    ]


def restriction_states() -> dict[int, tuple[str, int]]:
    """Every user's proxy restriction as user_id -> (reason code or "", version).

    Proxies load this at start-up; the versions let them ignore older events.
    """
    from .models import UserRestriction

    return {
        user_id: (reason, version)
        for user_id, reason, version in UserRestriction.objects.values_list(
            "user_id", "reason", "version"
        )
    }


def outbox_pending(*, model: type, using: str, limit: int) -> list:
    """Undelivered outbox rows of `model` (plans or accounts outbox), oldest first."""
    return list(model.objects.using(using).filter(sent_at__isnull=True).order_by("id")[:limit])
