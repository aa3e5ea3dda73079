"""Reads on the plans DB."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NotRequired, TypedDict

from django.db.models import Count, ExpressionWrapper, F, FloatField, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDay, TruncHour
from django.utils import timezone

from .claim_keys import email_claim_hash
from .models import (
    ControllerHeartbeat,
    FreePlanClaim,
    Plan,
    QueuedPlan,
    QuotaGrantLedger,
    Subscription,
    SubscriptionEvent,
    SubscriptionStatus,
    SubscriptionToken,
    UsageBucket,
    UsageReset,
    UserRestriction,
)

Granularity = Literal["hour", "day"]

# What operators see as "over 80 % used" and "expiring soon" (admin filter and panel).
NEAR_LIMIT_RATIO = 0.8
EXPIRING_SOON = timedelta(days=3)


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


def user_ids_near_limit(*, ratio: float = NEAR_LIMIT_RATIO) -> list[int]:
    """Users whose current usage is at least `ratio` of their limit."""
    return list(
        Subscription.objects.filter(is_current=True, traffic_limit_bytes__isnull=False)
        .annotate(used=F("bytes_up") + F("bytes_down"))
        .filter(used__gte=F("traffic_limit_bytes") * ratio)
        .values_list("user_id", flat=True)
    )


def user_ids_expiring(*, within: timedelta = EXPIRING_SOON) -> list[int]:
    now = timezone.now()
    return list(
        Subscription.objects.filter(
            is_current=True, expires_at__gte=now, expires_at__lt=now + within
        ).values_list("user_id", flat=True)
    )


def user_ids_with_current_subscription() -> list[int]:
    return list(Subscription.objects.filter(is_current=True).values_list("user_id", flat=True))


def free_plan_claimed(*, user_id: int) -> bool:
    """Whether the user has ever claimed a free plan (each user may, once)."""
    return FreePlanClaim.objects.filter(user_id=user_id).exists()


def free_plan_claimed_by_email(*, email: str) -> bool:
    """Whether a free plan was claimed with this address or another form of the same
    mailbox (plans.claim_keys), by any account, deleted ones included."""
    return FreePlanClaim.objects.filter(email_hash=email_claim_hash(email)).exists()


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


def day_start(now: datetime | None = None) -> datetime:
    """Midnight of today in the current time zone (UTC by default): where usage days begin."""
    now = now or timezone.now()
    return now.astimezone(timezone.get_current_timezone()).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def days_back(days: int, *, now: datetime | None = None) -> datetime:
    """The start of the last `days` calendar days, today included."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days!r}")
    return day_start(now) - timedelta(days=days - 1)


def _daily_series(
    qs: QuerySet[UsageBucket], *, days: int, now: datetime | None
) -> list[UsagePoint]:
    start = days_back(days, now=now)
    today = day_start(now)
    rows = (
        qs.filter(hour__gte=start, hour__lt=today + timedelta(days=1))
        .annotate(period=TruncDay("hour"))
        .values("period")
        .annotate(bytes_up=Sum("bytes_up"), bytes_down=Sum("bytes_down"))
        .order_by("period")
    )
    by_day = {r["period"].date(): r for r in rows}
    series: list[UsagePoint] = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        row = by_day.get(day.date())
        series.append(
            UsagePoint(
                period=day,
                bytes_up=row["bytes_up"] if row else 0,
                bytes_down=row["bytes_down"] if row else 0,
            )
        )
    return series


def usage_daily_series(
    *, user_id: int, days: int = 30, now: datetime | None = None
) -> list[UsagePoint]:
    """One point per day for the last `days` days up to today, oldest first, zero-filled.

    Days are calendar days in the current time zone (UTC by default), so the chart has a
    bar for every day even when nothing was used.
    """
    return _daily_series(UsageBucket.objects.filter(user_id=user_id), days=days, now=now)


def usage_daily_totals(*, days: int = 14, now: datetime | None = None) -> list[UsagePoint]:
    """Traffic of all users per day for the last `days` days (same shape as above)."""
    return _daily_series(UsageBucket.objects.all(), days=days, now=now)


def subscription_counts_by_status() -> dict[str, int]:
    """How many current subscriptions are in each status (every status present, maybe 0)."""
    counts = dict.fromkeys(SubscriptionStatus.values, 0)
    rows = (
        Subscription.objects.filter(is_current=True)
        .values("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def free_plan_claim_allowed(*, user_id: int, email: str | None = None) -> bool:
    """Whether the portal should offer the free plan to this user right now.

    Only users who never claimed one (nor did anyone with their e-mail address, when
    given), and who have no current subscription or only an expired one: claiming would
    otherwise replace a running paid plan or lift an operator's "disabled".
    """
    if free_plan_claimed(user_id=user_id):
        return False
    if email and free_plan_claimed_by_email(email=email):
        return False
    current = subscription_get_current(user_id=user_id)
    return current is None or current.status == SubscriptionStatus.EXPIRED


def restriction_states() -> dict[int, tuple[str, int]]:
    """Every user's proxy restriction as user_id -> (reason code or "", version).

    Proxies load this at start-up; the versions let them ignore older events.
    """
    return {
        user_id: (reason, version)
        for user_id, reason, version in UserRestriction.objects.values_list(
            "user_id", "reason", "version"
        )
    }


def user_ids_on_plan(*, plan_id: int) -> list[int]:
    """Users whose current subscription is on this plan."""
    return list(
        Subscription.objects.filter(is_current=True, plan_id=plan_id).values_list(
            "user_id", flat=True
        )
    )


def subscription_list(
    *,
    user_id: int | None = None,
    plan_id: int | None = None,
    status: str | None = None,
    is_current: bool | None = None,
) -> QuerySet[Subscription]:
    """Subscriptions newest first, optionally filtered (API list for operators)."""
    qs = Subscription.objects.select_related("plan").order_by("-created_at", "-pk")
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    if plan_id is not None:
        qs = qs.filter(plan_id=plan_id)
    if status:
        qs = qs.filter(status=status)
    if is_current is not None:
        qs = qs.filter(is_current=is_current)
    return qs


def plan_get_default_free() -> Plan | None:
    """The public free plan a user claims when they name none (the oldest one)."""
    return Plan.objects.filter(is_free=True, is_public=True).order_by("pk").first()


def throttle_states() -> dict[int, int]:
    """Users the proxy holds to a reduced speed (throttling quota reached): id -> B/s."""
    rows = UserRestriction.objects.filter(throttle_bps__isnull=False).values_list(
        "user_id", "throttle_bps"
    )
    return {user_id: bps for user_id, bps in rows if bps is not None}


def queued_plan_get(*, user_id: int) -> QueuedPlan | None:
    return QueuedPlan.objects.select_related("plan").filter(user_id=user_id).first()


def subscription_history(*, subscription: Subscription) -> tuple[list, list]:
    """A subscription's history entries and reset records, oldest first."""
    events = list(subscription.history.order_by("at", "id"))
    resets = list(UsageReset.objects.filter(subscription=subscription).order_by("period_end"))
    return events, resets


def user_history(*, user_id: int, limit: int = 500) -> list:
    """The newest `limit` history entries across all of a user's subscriptions, oldest first."""
    rows = SubscriptionEvent.objects.filter(user_id=user_id).order_by("-at", "-id")[:limit]
    return list(reversed(rows))


def subscription_token_get(*, token: str) -> SubscriptionToken | None:
    return SubscriptionToken.objects.filter(token=token).first()


def subscription_token_of_user(*, user_id: int) -> str | None:
    """The user's subscription-URL token; None until a plan or a POST created one."""
    return SubscriptionToken.objects.filter(user_id=user_id).values_list("token", flat=True).first()


class SubscriptionUserinfo(TypedDict):
    upload: int
    download: int
    total: int
    expire: int
    status: str | None
    plan: str | None
    next_reset_at: NotRequired[str | None]
    lifetime: NotRequired[int]


def subscription_userinfo(*, user_id: int) -> SubscriptionUserinfo:
    """The numbers client apps read from `subscription-userinfo`, and the portal shows.

    upload/download: this period's bytes; total: the period's allowance (0 = unlimited);
    expire: Unix seconds of the expiry (0 = none).
    """
    sub = subscription_get_current(user_id=user_id)
    if sub is None:
        return {"upload": 0, "download": 0, "total": 0, "expire": 0, "status": None, "plan": None}
    return {
        "upload": sub.bytes_up,
        "download": sub.bytes_down,
        "total": sub.traffic_limit_bytes or 0,
        "expire": int(sub.expires_at.timestamp()) if sub.expires_at else 0,
        "status": sub.status,
        "plan": sub.plan.name,
        "next_reset_at": sub.next_reset_at.isoformat() if sub.next_reset_at else None,
        "lifetime": sub.lifetime_bytes_used,
    }


def device_limit_for(user_id: int) -> int | None:
    """The device limit of the user's current plan (None = unlimited); proxy hot path."""
    return (
        Subscription.objects.filter(user_id=user_id, is_current=True)
        .values_list("plan__device_limit", flat=True)
        .first()
    )


def plan_list_self_queueable() -> QuerySet[Plan]:
    """Plans users may queue themselves: public, without a price, and not a free plan.

    Free plans come only through the once-per-user claim (plan_claim_free); letting users
    queue them would hand out the free plan again and again. Paid plans are queued by
    operators until billing exists.
    """
    return Plan.objects.filter(is_public=True, price=0, is_free=False)


# A worker whose last heartbeat is older than this is gone (it beats every few seconds).
HEARTBEAT_STALE = timedelta(seconds=60)


@dataclass(frozen=True)
class ControllerLag:
    """What the plan-controller workers last said about their backlog."""

    workers: list[ControllerHeartbeat]  # those heard from within HEARTBEAT_STALE
    lag_seconds: float  # the worst of them
    lag_events: int  # their sum
    problem: str  # empty when healthy


def controller_lag(*, max_lag_seconds: float, now: datetime | None = None) -> ControllerLag:
    """The workers' lag and whether it is a problem: a worker further behind than
    `max_lag_seconds`, or workers that reported once and then went silent."""
    now = now or timezone.now()
    beats = list(ControllerHeartbeat.objects.all())
    live = [b for b in beats if now - b.updated_at <= HEARTBEAT_STALE]
    worst = max((b.lag_seconds for b in live), default=0.0)
    events = sum(b.lag_events for b in live)
    problem = ""
    if beats and not live:
        problem = f"no plan-controller worker reported in {HEARTBEAT_STALE.seconds} s"
    elif worst > max_lag_seconds:
        problem = (
            f"plan-controller {worst:.0f} s behind (more than {max_lag_seconds:.0f} s): "
            f"{events} events waiting"
        )
    return ControllerLag(workers=live, lag_seconds=worst, lag_events=events, problem=problem)


def grants_held(*, user_id: int, now: datetime | None = None) -> list[QuotaGrantLedger]:
    """The user's quota grants per proxy instance, those still counting first."""
    now = now or timezone.now()
    rows = list(QuotaGrantLedger.objects.filter(user_id=user_id))
    return sorted(rows, key=lambda r: (not (r.expires_at and r.expires_at > now), r.instance_id))


# ---------------------------------------------------------------------------------------
# Operator reports: top users, traffic per plan, users near their limit, exports.
# ---------------------------------------------------------------------------------------
_TOTAL = F("bytes_up") + F("bytes_down")


class UsageWindows(TypedDict):
    """A user's traffic (up + down) today, in the last 7 days and in the last 30 days."""

    today: int
    week: int
    month: int


def usage_windows_by_user(
    *, user_ids: Iterable[int], now: datetime | None = None
) -> dict[int, UsageWindows]:
    """Traffic windows of many users in one query (users without traffic are absent)."""
    ids = list(user_ids)
    if not ids:
        return {}
    today, week, month = (days_back(n, now=now) for n in (1, 7, 30))
    rows = (
        UsageBucket.objects.filter(user_id__in=ids, hour__gte=month)
        .values("user_id")
        .annotate(
            today=Coalesce(Sum(_TOTAL, filter=Q(hour__gte=today)), 0),
            week=Coalesce(Sum(_TOTAL, filter=Q(hour__gte=week)), 0),
            month=Sum(_TOTAL),
        )
        .order_by()
    )
    return {
        r["user_id"]: UsageWindows(today=r["today"], week=r["week"], month=r["month"]) for r in rows
    }


class UserTraffic(TypedDict):
    user_id: int
    bytes_up: int
    bytes_down: int
    total: int


def usage_top_users(*, since: datetime, limit: int = 20) -> list[UserTraffic]:
    """The users with the most traffic (up + down) since `since`, busiest first."""
    rows = (
        UsageBucket.objects.filter(hour__gte=since)
        .values("user_id")
        .annotate(up=Sum("bytes_up"), down=Sum("bytes_down"), total=Sum(_TOTAL))
        .order_by("-total", "user_id")[:limit]
    )
    return [
        UserTraffic(user_id=r["user_id"], bytes_up=r["up"], bytes_down=r["down"], total=r["total"])
        for r in rows
    ]


class PlanTraffic(TypedDict):
    plan_id: int
    plan: str
    users: int
    bytes_up: int
    bytes_down: int
    total: int


def usage_by_plan(*, since: datetime) -> list[PlanTraffic]:
    """Traffic since `since` per plan of the subscription it was billed to, largest first."""
    rows = (
        UsageBucket.objects.filter(hour__gte=since)
        .values("subscription__plan_id", "subscription__plan__name")
        .annotate(
            users=Count("user_id", distinct=True),
            up=Sum("bytes_up"),
            down=Sum("bytes_down"),
            total=Sum(_TOTAL),
        )
        .order_by("-total", "subscription__plan__name")
    )
    return [
        PlanTraffic(
            plan_id=r["subscription__plan_id"],
            plan=r["subscription__plan__name"],
            users=r["users"],
            bytes_up=r["up"],
            bytes_down=r["down"],
            total=r["total"],
        )
        for r in rows
    ]


def usage_total_since(*, since: datetime) -> int:
    """All users' traffic (up + down) since `since`."""
    total = UsageBucket.objects.filter(hour__gte=since).aggregate(total=Sum(_TOTAL))["total"]
    return int(total or 0)


def subscriptions_near_limit(
    *, ratio: float = NEAR_LIMIT_RATIO, limit: int = 50
) -> list[Subscription]:
    """Current subscriptions that used at least `ratio` of their limit, fullest first."""
    return list(
        Subscription.objects.select_related("plan")
        .filter(is_current=True, traffic_limit_bytes__isnull=False)
        .annotate(
            used=_TOTAL,
            fill=ExpressionWrapper(_TOTAL * 1.0 / F("traffic_limit_bytes"), FloatField()),
        )
        .filter(used__gte=F("traffic_limit_bytes") * ratio)
        .order_by("-fill", "user_id")[:limit]
    )


class DailyUserUsage(TypedDict):
    day: datetime
    user_id: int
    plan: str
    bytes_up: int
    bytes_down: int


def usage_daily_by_user(
    *, start: datetime, end: datetime, user_ids: Iterable[int] | None = None
) -> Iterator[DailyUserUsage]:
    """Traffic per day, user and plan in [start, end), oldest day first (CSV export).

    Streamed from the database in chunks, so a long range never sits in memory.
    """
    qs = UsageBucket.objects.filter(hour__gte=start, hour__lt=end)
    if user_ids is not None:
        qs = qs.filter(user_id__in=list(user_ids))
    rows = (
        qs.annotate(day=TruncDay("hour"))
        .values("day", "user_id", "subscription__plan__name")
        .annotate(bytes_up=Sum("bytes_up"), bytes_down=Sum("bytes_down"))
        .order_by("day", "user_id", "subscription__plan__name")
    )
    for r in rows.iterator(chunk_size=2000):
        yield DailyUserUsage(
            day=r["day"],
            user_id=r["user_id"],
            plan=r["subscription__plan__name"],
            bytes_up=r["bytes_up"],
            bytes_down=r["bytes_down"],
        )
