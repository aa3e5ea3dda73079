"""Where expiry is decided: the subscription status machine and the clock-driven sweeps.

A subscription is on hold (waiting for first use), active, limited (quota reached: cut
or throttled), expired or disabled. The helpers here move one locked subscription
through time inside the caller's plans-DB transaction: start its clock, close reset
periods, expire it or mark it limited, or hand over to the user's queued plan. The
sweeps (Celery beat) apply the deadlines nobody's traffic reached first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB
from plans import cycles
from plans.history import history_add, iso
from plans.models import (
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEventKind,
    SubscriptionStatus,
    UsageReset,
)

from .locks import current_due_for_update
from .restrictions import restriction_lift, restriction_sync

# Statuses whose clock runs: they can expire and reach reset boundaries.
RUNNING_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED)
# Boundaries applied in one go at most (an idle subscription on a daily cycle for years).
MAX_BOUNDARIES = 1000


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.PLANS_TIME_ZONE)


def next_reset(sub: Subscription, after: datetime) -> datetime | None:
    """The subscription's first reset-cycle boundary after `after` (None: no cycle)."""
    anchor = sub.started_at or after
    return cycles.next_boundary(
        cycle=sub.plan.reset_cycle,
        every_days=sub.plan.reset_every_days,
        anchor=anchor,
        after=after,
        tz=_tz(),
    )


def _clock_fields(sub: Subscription, at: datetime) -> None:
    plan = sub.plan
    sub.status = SubscriptionStatus.ACTIVE
    sub.started_at = sub.period_started_at = at
    sub.hold_deadline = None
    sub.expires_at = at + timedelta(days=plan.duration_days) if plan.duration_days else None
    sub.next_reset_at = next_reset(sub, at)


def clock_start(sub: Subscription, at: datetime, *, why: str) -> None:
    """Start the clock: ACTIVE from `at`, expiry and the first reset boundary from there."""
    _clock_fields(sub, at)
    history_add(sub, SubscriptionEventKind.STARTED, at, why, expires_at=iso(sub.expires_at))


def subscription_new(
    *, user_id: int, plan: Plan, now: datetime, on_hold: bool, message: str, by: str = ""
) -> Subscription:
    """Create the user's new current subscription, current from `now` (the caller retired
    the old one); the row is written once."""
    sub = Subscription(
        user_id=user_id,
        plan=plan,
        status=SubscriptionStatus.ON_HOLD if on_hold else SubscriptionStatus.ACTIVE,
        is_current=True,
        current_from=now,
        traffic_limit_bytes=plan.traffic_limit_bytes,
    )
    if on_hold and plan.first_use_deadline_days:
        sub.hold_deadline = now + timedelta(days=plan.first_use_deadline_days)
    if not on_hold:
        _clock_fields(sub, now)
    sub.full_clean(validate_constraints=False)
    sub.save()
    history_add(sub, SubscriptionEventKind.ASSIGNED, now, message, plan=plan.name, by=by or None)
    if on_hold:
        history_add(
            sub,
            SubscriptionEventKind.ON_HOLD,
            now,
            "waiting for the first proxy use",
            deadline=iso(sub.hold_deadline),
        )
    else:
        history_add(
            sub, SubscriptionEventKind.STARTED, now, "assigned", expires_at=iso(sub.expires_at)
        )
    return sub


def period_close(
    sub: Subscription, boundary: datetime, *, manual: bool = False, by: str = ""
) -> UsageReset:
    """Close the period at `boundary`: a reset record keeps its usage, the counters and
    top-ups go back to zero, lifetime totals stay, `limited` becomes `active`.

    A manual reset (an operator's) names them with `by`."""
    record = UsageReset.objects.create(
        subscription=sub,
        user_id=sub.user_id,
        period_start=sub.period_started_at or sub.started_at or boundary,
        period_end=boundary,
        bytes_up=sub.bytes_up,
        bytes_down=sub.bytes_down,
        limit_bytes=sub.traffic_limit_bytes,
        was_limited=sub.status == SubscriptionStatus.LIMITED,
        manual=manual,
    )
    sub.bytes_up = sub.bytes_down = 0
    if sub.traffic_limit_bytes is not None:
        sub.traffic_limit_bytes -= sub.topup_bytes
    sub.topup_bytes = 0
    sub.period_started_at = boundary
    if not manual:
        sub.next_reset_at = next_reset(sub, boundary)
    if sub.status == SubscriptionStatus.LIMITED:
        sub.status = SubscriptionStatus.ACTIVE
    history_add(
        sub,
        SubscriptionEventKind.RESET,
        boundary,
        (f"reset {by}".strip() if by else "reset by an operator")
        if manual
        else f"{sub.plan.get_reset_cycle_display().lower()} reset",
        bytes_up=record.bytes_up,
        bytes_down=record.bytes_down,
        period_start=iso(record.period_start),
        next_reset_at=iso(sub.next_reset_at),
        manual=int(manual),
        by=by or None,
    )
    return record


def periods_roll(sub: Subscription, until: datetime) -> int:
    """Apply every cycle boundary at or before `until` (at most MAX_BOUNDARIES)."""
    done = 0
    while (
        done < MAX_BOUNDARIES
        and sub.status in RUNNING_STATUSES
        and sub.next_reset_at is not None
        and sub.next_reset_at <= until
        and (sub.expires_at is None or sub.next_reset_at < sub.expires_at)
    ):
        period_close(sub, sub.next_reset_at)
        done += 1
    return done


def renew_from_queue(sub: Subscription, at: datetime, why: str) -> Subscription | None:
    """Hand over to the user's queued plan at `at`; None when nothing is queued.

    The old subscription stops being current and the new one is active in the same
    transaction, and the event published is PlanAssignedEvent (never a restriction),
    so the proxy sees no gap.
    """
    queued = (
        QueuedPlan.objects.select_for_update()
        .select_related("plan")
        .filter(user_id=sub.user_id)
        .first()
    )
    if queued is None:
        return None
    sub.is_current = False
    sub.current_until = at
    sub.save()
    history_add(
        sub,
        SubscriptionEventKind.RENEWED,
        at,
        f"{why}: {queued.plan.name} took over",
        plan=queued.plan.name,
        reason=why,
    )
    new = subscription_new(
        user_id=sub.user_id,
        plan=queued.plan,
        now=at,
        on_hold=False,
        message=f"from the queue ({why})",
    )
    queued.delete()
    restriction_lift(subscription=new)
    return new


def settle(sub: Subscription, at: datetime) -> Subscription:
    """Apply expiry and exhaustion at `at`; may hand over to a queued plan.

    Returns the user's current subscription afterwards (`sub`, or the one that took over).
    """
    if sub.status in RUNNING_STATUSES and sub.expires_at is not None and sub.expires_at <= at:
        renewed = renew_from_queue(sub, sub.expires_at, "expired")
        if renewed is not None:
            return renewed
        sub.status = SubscriptionStatus.EXPIRED
        history_add(sub, SubscriptionEventKind.EXPIRED, sub.expires_at)
    elif sub.status == SubscriptionStatus.ACTIVE and sub.is_exhausted:
        renewed = renew_from_queue(sub, at, "quota reached")
        if renewed is not None:
            return renewed
        sub.status = SubscriptionStatus.LIMITED
        kind = (
            SubscriptionEventKind.THROTTLED if sub.plan.throttles else SubscriptionEventKind.LIMITED
        )
        history_add(sub, kind, at, used=sub.bytes_used, limit=sub.traffic_limit_bytes)
    return sub


def subscription_expire_due(*, now: datetime | None = None) -> list[int]:
    """Expire current subscriptions past `expires_at` and restrict their users; a queued
    plan takes over instead where there is one."""
    now = now or timezone.now()
    expired: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        for sub in current_due_for_update(RUNNING_STATUSES, expires_at__lte=now):
            assert sub.expires_at is not None
            periods_roll(sub, sub.expires_at)
            current = settle(sub, now)
            current.save()
            restriction_sync(subscription=current)
            expired.append(sub.user_id)
    return expired


def subscription_reset_due(*, now: datetime | None = None) -> list[int]:
    """Apply every reset-cycle boundary that has passed (Celery beat).

    Each boundary writes a reset record and zeroes the period; a `limited` user is let
    back in through PlanAssignedEvent. Traffic still in flight from before a boundary is
    later added to that period's record by traffic_apply_batch.
    """
    now = now or timezone.now()
    done: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        for sub in current_due_for_update(RUNNING_STATUSES, next_reset_at__lte=now):
            if periods_roll(sub, now):
                sub.save()
                restriction_sync(subscription=sub)
                done.append(sub.user_id)
    return done


def subscription_start_due(*, now: datetime | None = None) -> list[int]:
    """Start on-hold subscriptions whose first-use deadline has passed (Celery beat)."""
    now = now or timezone.now()
    started: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        on_hold = (SubscriptionStatus.ON_HOLD,)
        for sub in current_due_for_update(on_hold, hold_deadline__lte=now):
            assert sub.hold_deadline is not None
            clock_start(sub, sub.hold_deadline, why="hold deadline passed")
            periods_roll(sub, now)
            current = settle(sub, now)
            current.save()
            restriction_sync(subscription=current)
            started.append(sub.user_id)
    return started
