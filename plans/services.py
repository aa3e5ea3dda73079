"""Writes on the plans DB: assigning plans and changing subscriptions.

Every service runs in `transaction.atomic(using=PLANS_DB)` and locks the user's current
subscription row, so concurrent changes to one user serialise in the database.
A change that alters what the proxy allows writes its event (restriction, plan assigned)
to the plans outbox in the same transaction; the worker relays it to Kafka.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB
from goproxy_site.errors import ConflictError
from goproxy_site.events import schemas
from goproxy_site.outbox import outbox_add

from . import cycles
from .models import (
    FreePlanClaim,
    OutboxEvent,
    Plan,
    QueuedPlan,
    RestrictionReason,
    Subscription,
    SubscriptionEvent,
    SubscriptionEventKind,
    SubscriptionStatus,
    TrafficSequence,
    UnplannedUsage,
    UsageBucket,
    UsageReset,
    UserRestriction,
)
from .selectors import free_plan_claimable

logger = logging.getLogger(__name__)

LIVE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED, SubscriptionStatus.ON_HOLD)


class FreePlanAlreadyClaimed(ConflictError):
    """The user has claimed a free plan before."""

    code = "already_claimed"


def _current_for_update(user_id: int) -> Subscription | None:
    return Subscription.objects.select_for_update().filter(user_id=user_id, is_current=True).first()


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.PLANS_TIME_ZONE)


def _log(
    sub: Subscription, kind: str, at: datetime, message: str = "", **data: Any
) -> SubscriptionEvent:
    """Append one entry to the subscription's history (in the caller's transaction)."""
    return SubscriptionEvent.objects.create(
        subscription=sub, user_id=sub.user_id, kind=kind, at=at, message=message[:300], data=data
    )


def _next_reset(sub: Subscription, after: datetime) -> datetime | None:
    anchor = sub.started_at or after
    return cycles.next_boundary(
        cycle=sub.plan.reset_cycle,
        every_days=sub.plan.reset_every_days,
        anchor=anchor,
        after=after,
        tz=_tz(),
    )


def _start(sub: Subscription, at: datetime, *, why: str) -> None:
    """Start the clock: ACTIVE from `at`, expiry and the first reset boundary from there."""
    plan = sub.plan
    sub.status = SubscriptionStatus.ACTIVE
    sub.started_at = sub.period_started_at = at
    sub.hold_deadline = None
    sub.expires_at = at + timedelta(days=plan.duration_days) if plan.duration_days else None
    sub.next_reset_at = _next_reset(sub, at)
    _log(sub, SubscriptionEventKind.STARTED, at, why, expires_at=_iso(sub.expires_at))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _new_subscription(
    *, user_id: int, plan: Plan, now: datetime, on_hold: bool, message: str
) -> Subscription:
    sub = Subscription(
        user_id=user_id,
        plan=plan,
        status=SubscriptionStatus.ON_HOLD if on_hold else SubscriptionStatus.ACTIVE,
        is_current=True,
        traffic_limit_bytes=plan.traffic_limit_bytes,
    )
    if on_hold and plan.first_use_deadline_days:
        sub.hold_deadline = now + timedelta(days=plan.first_use_deadline_days)
    sub.full_clean(validate_constraints=False)
    sub.save()
    _log(sub, SubscriptionEventKind.ASSIGNED, now, message, plan=plan.name)
    if on_hold:
        _log(
            sub,
            SubscriptionEventKind.ON_HOLD,
            now,
            "waiting for the first proxy use",
            deadline=_iso(sub.hold_deadline),
        )
    else:
        _start(sub, now, why="assigned")
    sub.save()
    return sub


# Statuses whose clock runs: they can expire and reach reset boundaries.
RUNNING_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED)


def _current_due_for_update(
    statuses: Sequence[str], **deadline_lte: datetime
) -> QuerySet[Subscription]:
    """Current subscriptions in `statuses` whose deadline has passed, locked, with plans."""
    return (
        Subscription.objects.select_for_update()
        .select_related("plan")
        .filter(is_current=True, status__in=list(statuses), **deadline_lte)
    )


def plan_assign(
    *, user_id: int, plan: Plan, now: datetime | None = None, by: str = ""
) -> Subscription:
    """Make `plan` the user's current subscription, replacing any current one atomically.

    Usage starts at zero; the previous subscription keeps its totals as history. A plan
    that starts on first use is put on hold (the proxy admits the user; the first traffic
    starts the clock, or the plan's deadline does).
    """
    now = now or timezone.now()
    with transaction.atomic(using=PLANS_DB):
        previous = _current_for_update(user_id)
        if previous is not None:
            previous.is_current = False
            previous.save(update_fields=["is_current", "updated_at"])
            _log(previous, SubscriptionEventKind.REPLACED, now, f"replaced by {plan.name}")
        subscription = _new_subscription(
            user_id=user_id,
            plan=plan,
            now=now,
            on_hold=plan.start_on_first_use,
            message=f"assigned {by}".strip(),
        )
        _restriction_lift(subscription=subscription)
    return subscription


def plan_claim_free(*, user_id: int, plan: Plan) -> Subscription:
    """Assign a free plan; each user may do this once (enforced by a unique row)."""
    if not plan.is_free:
        raise ValidationError({"plan": "Only a plan marked free can be claimed."})
    try:
        with transaction.atomic(using=PLANS_DB):
            FreePlanClaim.objects.create(user_id=user_id, plan=plan)
            return plan_assign(user_id=user_id, plan=plan)
    except IntegrityError as exc:
        raise FreePlanAlreadyClaimed("This user has already claimed a free plan.") from exc


def subscription_extend(*, subscription: Subscription, days: int) -> Subscription:
    """Add days to a subscription; an expired one is extended from now and reactivated."""
    if days < 1:
        raise ValidationError({"days": "Extend by at least one day."})
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if sub.status == SubscriptionStatus.ON_HOLD:
            raise ValidationError(
                "This subscription has not started; its clock runs from first use."
            )
        if sub.expires_at is None:
            raise ValidationError("This subscription has no expiry to extend.")
        old = sub.expires_at
        sub.expires_at = max(sub.expires_at, now) + timedelta(days=days)
        if sub.status == SubscriptionStatus.EXPIRED:
            sub.status = (
                SubscriptionStatus.LIMITED if sub.is_exhausted else SubscriptionStatus.ACTIVE
            )
            if sub.next_reset_at is not None and sub.next_reset_at <= now:
                sub.next_reset_at = _next_reset(sub, now)
        sub.save(update_fields=["expires_at", "status", "next_reset_at", "updated_at"])
        _log(
            sub,
            SubscriptionEventKind.EXTENDED,
            now,
            f"+{days} day(s)",
            days=days,
            old_expires_at=_iso(old),
            expires_at=_iso(sub.expires_at),
        )
        _restriction_sync(subscription=sub)
    return sub


def subscription_reset_usage(*, subscription: Subscription) -> Subscription:
    """Close the current period now (operator reset): usage goes to a reset record and
    back to zero, lifetime totals stay, a limited subscription becomes active. The plan's
    reset cycle keeps its own boundaries."""
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = (
            Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
        )
        _period_reset(sub, now, manual=True)
        sub.save()
        _restriction_sync(subscription=sub)
    return sub


def subscription_disable(*, subscription: Subscription, reason: str = "") -> Subscription:
    """Disable a subscription (operator action); the user is refused by the proxy."""
    with transaction.atomic(using=PLANS_DB):
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        before = sub.status
        sub.status = SubscriptionStatus.DISABLED
        sub.save(update_fields=["status", "updated_at"])
        if before != SubscriptionStatus.DISABLED:
            _log(sub, SubscriptionEventKind.DISABLED, timezone.now(), reason, previous=before)
        _restriction_sync(subscription=sub)
    return sub


def subscription_disable_current(*, user_id: int, reason: str = "") -> Subscription | None:
    with transaction.atomic(using=PLANS_DB):
        current = _current_for_update(user_id)
        if current is None:
            return None
        return subscription_disable(subscription=current, reason=reason)


# ---------------------------------------------------------------------------------------
# Traffic pipeline: restrictions, outbox, applying traffic deltas, expiry.
# ---------------------------------------------------------------------------------------

# The restriction that each non-active status of the current subscription implies.
STATUS_RESTRICTION = {
    SubscriptionStatus.LIMITED: RestrictionReason.LIMIT,
    SubscriptionStatus.EXPIRED: RestrictionReason.EXPIRED,
    SubscriptionStatus.DISABLED: RestrictionReason.DISABLED,
}


def _restriction_for_update(user_id: int) -> UserRestriction:
    row, _ = UserRestriction.objects.get_or_create(user_id=user_id)
    return UserRestriction.objects.select_for_update().get(pk=row.pk)


def _restriction_set(*, user_id: int, reason: str) -> bool:
    """Restrict a user for `reason`; publish only when the restriction changes."""
    row = _restriction_for_update(user_id)
    if row.reason == reason and row.throttle_bps is None:
        return False
    row.reason = reason
    row.throttle_bps = None
    row.version += 1
    row.save(update_fields=["reason", "throttle_bps", "version", "updated_at"])
    cls = (
        schemas.UserExceededTrafficLimitEvent
        if reason == RestrictionReason.LIMIT
        else schemas.UserConsumedTrafficWithoutPlan
    )
    outbox_add(
        model=OutboxEvent,
        event=cls(user_id=user_id, reason=reason, restriction_version=row.version),
    )
    logger.info("user %s restricted: %s (v%s)", user_id, reason, row.version)
    return True


def _restriction_lift(*, subscription: Subscription) -> None:
    """Lift any restriction and publish PlanAssignedEvent (assignment or renewal)."""
    row = _restriction_for_update(subscription.user_id)
    row.reason = ""
    row.throttle_bps = None
    row.version += 1
    row.save(update_fields=["reason", "throttle_bps", "version", "updated_at"])
    outbox_add(
        model=OutboxEvent,
        event=schemas.PlanAssignedEvent(
            user_id=subscription.user_id,
            plan_id=subscription.plan_id,
            subscription_id=subscription.pk,
            restriction_version=row.version,
        ),
    )


def _throttle_set(*, user_id: int, speed_bps: int) -> bool:
    """Hold a user to `speed_bps` instead of refusing them; publish on change."""
    row = _restriction_for_update(user_id)
    if row.reason == "" and row.throttle_bps == speed_bps:
        return False
    row.reason = ""
    row.throttle_bps = speed_bps
    row.version += 1
    row.save(update_fields=["reason", "throttle_bps", "version", "updated_at"])
    outbox_add(
        model=OutboxEvent,
        event=schemas.UserThrottledEvent(
            user_id=user_id, speed_bps=speed_bps, restriction_version=row.version
        ),
    )
    logger.info("user %s throttled to %s B/s (v%s)", user_id, speed_bps, row.version)
    return True


def _restriction_sync(*, subscription: Subscription) -> bool:
    """Make the proxy-facing state match the current subscription's status.

    limited + throttling plan -> throttled; limited/expired/disabled -> restricted;
    active/on hold -> open. Publishes (through the outbox) only on a change; returns
    whether a restriction or throttle was newly set.
    """
    if not subscription.is_current:
        return False
    status = SubscriptionStatus(subscription.status)
    if status == SubscriptionStatus.LIMITED and subscription.plan.throttles:
        speed = subscription.plan.throttle_speed_bps
        assert speed is not None
        return _throttle_set(user_id=subscription.user_id, speed_bps=speed)
    reason = STATUS_RESTRICTION.get(status)
    if reason is not None:
        return _restriction_set(user_id=subscription.user_id, reason=reason)
    current = UserRestriction.objects.filter(user_id=subscription.user_id).first()
    if current is not None and (current.is_restricted or current.throttle_bps is not None):
        _restriction_lift(subscription=subscription)
    return False


@dataclass(frozen=True)
class TrafficBatchResult:
    applied: int = 0
    skipped: int = 0
    users: int = 0
    restricted: list[int] = field(default_factory=list)


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _add_hourly(model: type, lookup: dict, hours: dict[datetime, list[int]]) -> None:
    for hour, (up, down) in hours.items():
        updated = model.objects.filter(hour=hour, **lookup).update(
            bytes_up=F("bytes_up") + up, bytes_down=F("bytes_down") + down
        )
        if not updated:
            model.objects.create(hour=hour, bytes_up=up, bytes_down=down, **lookup)


Delta = tuple[datetime, int, int]  # (occurred_at, bytes_up, bytes_down)


def _period_reset(sub: Subscription, boundary: datetime, *, manual: bool = False) -> UsageReset:
    """Close the period at `boundary`: a reset record keeps its usage, the counters and
    top-ups go back to zero, lifetime totals stay, `limited` becomes `active`."""
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
        sub.next_reset_at = _next_reset(sub, boundary)
    if sub.status == SubscriptionStatus.LIMITED:
        sub.status = SubscriptionStatus.ACTIVE
    _log(
        sub,
        SubscriptionEventKind.RESET,
        boundary,
        "reset by an operator" if manual else f"{sub.plan.reset_cycle} reset",
        bytes_up=record.bytes_up,
        bytes_down=record.bytes_down,
        period_start=_iso(record.period_start),
        next_reset_at=_iso(sub.next_reset_at),
    )
    return record


def _roll_periods(sub: Subscription, until: datetime) -> int:
    """Apply every cycle boundary at or before `until` (bounded: 1000 boundaries)."""
    done = 0
    live = (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED)
    while (
        done < 1000
        and sub.status in live
        and sub.next_reset_at is not None
        and sub.next_reset_at <= until
        and (sub.expires_at is None or sub.next_reset_at < sub.expires_at)
    ):
        _period_reset(sub, sub.next_reset_at)
        done += 1
    return done


def _renew_from_queue(sub: Subscription, at: datetime, why: str) -> Subscription | None:
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
    sub.save()
    _log(sub, SubscriptionEventKind.RENEWED, at, f"{why}: {queued.plan.name} took over")
    new = _new_subscription(
        user_id=sub.user_id,
        plan=queued.plan,
        now=at,
        on_hold=False,
        message=f"from the queue ({why})",
    )
    queued.delete()
    _restriction_lift(subscription=new)
    return new


def _settle(sub: Subscription, at: datetime) -> Subscription:
    """Apply expiry and exhaustion at `at`; may hand over to a queued plan."""
    live = (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED)
    if sub.status in live and sub.expires_at is not None and sub.expires_at <= at:
        sub.save()
        renewed = _renew_from_queue(sub, sub.expires_at, "expired")
        if renewed is not None:
            return renewed
        sub.status = SubscriptionStatus.EXPIRED
        _log(sub, SubscriptionEventKind.EXPIRED, sub.expires_at)
    elif sub.status == SubscriptionStatus.ACTIVE and sub.is_exhausted:
        sub.save()
        renewed = _renew_from_queue(sub, at, "quota reached")
        if renewed is not None:
            return renewed
        sub.status = SubscriptionStatus.LIMITED
        kind = (
            SubscriptionEventKind.THROTTLED if sub.plan.throttles else SubscriptionEventKind.LIMITED
        )
        _log(sub, kind, at, used=sub.bytes_used, limit=sub.traffic_limit_bytes)
    return sub


def _late_traffic(sub: Subscription, at: datetime, up: int, down: int) -> bool:
    """Bytes moved in an already closed period go to that period's reset record."""
    updated = UsageReset.objects.filter(
        subscription=sub, period_start__lte=at, period_end__gt=at
    ).update(bytes_up=F("bytes_up") + up, bytes_down=F("bytes_down") + down)
    return bool(updated)


def _traffic_apply_user(user_id: int, deltas: list[Delta], now: datetime) -> bool:
    """Add one user's deltas in time order; return whether a restriction/throttle was set.

    Each delta counts to the period it happened in: boundaries are applied as the deltas
    cross them, late bytes of a closed period go to its reset record. An on-hold plan
    starts at the first delta; expiry and exhaustion may hand over to the queued plan.
    """
    deltas.sort(key=lambda d: d[0])
    sub = (
        Subscription.objects.select_for_update()
        .select_related("plan")
        .filter(user_id=user_id, is_current=True)
        .first()
    )
    if sub is None:
        hours: dict[datetime, list[int]] = {}
        for at, up, down in deltas:
            bucket = hours.setdefault(_hour(at), [0, 0])
            bucket[0] += up
            bucket[1] += down
        _add_hourly(UnplannedUsage, {"user_id": user_id}, hours)
        return _restriction_set(user_id=user_id, reason=RestrictionReason.NO_PLAN)
    touched: dict[int, tuple[Subscription, dict[datetime, list[int]]]] = {}
    first_used = sub.bytes_used
    first_sub = sub
    first_period = sub.period_started_at
    for at, up, down in deltas:
        if sub.status == SubscriptionStatus.ON_HOLD:
            start = min(at, sub.hold_deadline) if sub.hold_deadline else at
            _start(sub, start, why="first use" if start == at else "hold deadline passed")
        _roll_periods(sub, at)
        sub = _settle(sub, at)
        _roll_periods(sub, at)
        entry = touched.setdefault(sub.pk, (sub, {}))
        bucket = entry[1].setdefault(_hour(at), [0, 0])
        bucket[0] += up
        bucket[1] += down
        sub.lifetime_bytes_up += up
        sub.lifetime_bytes_down += down
        if sub.period_started_at is not None and at < sub.period_started_at:
            if _late_traffic(sub, at, up, down):
                continue
        sub.bytes_up += up
        sub.bytes_down += down
        sub = _settle(sub, at)
    sub = _settle(sub, now)
    for s, hours in touched.values():
        s.save()
        _add_hourly(UsageBucket, {"user_id": user_id, "subscription": s}, hours)
    sub.save()
    from . import notifications

    same_period = sub.pk == first_sub.pk and sub.period_started_at == first_period
    before = first_used if same_period else 0
    notifications.quota_crossed(subscription=sub, used_before=before)
    return _restriction_sync(subscription=sub)


def traffic_apply_batch(
    *, deltas: Sequence[schemas.UserConsumedTrafficEvent], now: datetime | None = None
) -> TrafficBatchResult:
    """Apply proxy traffic deltas exactly once, in one plans-DB transaction.

    Each delta adds its bytes to the user's current subscription, in the period its
    `occurred_at` falls in, and to its hourly UsageBucket (or to UnplannedUsage when there
    is none). Per (proxy instance, user) the highest applied `seq` is stored with the
    bytes, so a redelivered delta is skipped. Crossing the limit, expiry or having no
    plan restricts (or throttles) the user once per transition and queues the event in
    the outbox; a queued plan takes over instead when there is one.
    """
    now = now or timezone.now()
    for d in deltas:
        if d.user_id <= 0 or d.bytes_up < 0 or d.bytes_down < 0 or d.seq <= 0:
            raise ValidationError(f"invalid traffic delta {d.event_id}: {d.payload()}")
    if not deltas:
        return TrafficBatchResult()
    with transaction.atomic(using=PLANS_DB):
        marks = {
            (m.instance_id, m.user_id): m.last_seq
            for m in TrafficSequence.objects.select_for_update().filter(
                instance_id__in={d.instance_id for d in deltas},
                user_id__in={d.user_id for d in deltas},
            )
        }
        new_marks: dict[tuple[str, int], int] = {}
        per_user: dict[int, list[Delta]] = defaultdict(list)
        skipped = 0
        for d in sorted(deltas, key=lambda d: (d.instance_id, d.user_id, d.seq)):
            key = (d.instance_id, d.user_id)
            if d.seq <= new_marks.get(key, marks.get(key, 0)):
                skipped += 1
                continue
            new_marks[key] = d.seq
            per_user[d.user_id].append((d.occurred_at, d.bytes_up, d.bytes_down))
        restricted = [
            user_id
            for user_id, user_deltas in sorted(per_user.items())
            if _traffic_apply_user(user_id, user_deltas, now)
        ]
        TrafficSequence.objects.bulk_create(
            [
                TrafficSequence(instance_id=i, user_id=u, last_seq=s)
                for (i, u), s in new_marks.items()
            ],
            update_conflicts=True,
            unique_fields=["instance_id", "user_id"],
            update_fields=["last_seq", "updated_at"],
        )
    return TrafficBatchResult(
        applied=len(deltas) - skipped, skipped=skipped, users=len(per_user), restricted=restricted
    )


def subscription_expire_due(*, now: datetime | None = None) -> list[int]:
    """Expire current subscriptions past `expires_at` and restrict their users; a queued
    plan takes over instead where there is one."""
    now = now or timezone.now()
    expired: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        for sub in _current_due_for_update(RUNNING_STATUSES, expires_at__lte=now):
            _roll_periods(sub, sub.expires_at)
            current = _settle(sub, now)
            current.save()
            _restriction_sync(subscription=current)
            expired.append(sub.user_id)
    return expired


def traffic_sequences_prune(*, older_than: timedelta) -> int:
    """Forget high-water marks of proxy instances silent for longer than `older_than`."""
    with transaction.atomic(using=PLANS_DB):
        deleted, _ = TrafficSequence.objects.filter(
            updated_at__lt=timezone.now() - older_than
        ).delete()
    return deleted


# API (issue 5): plan catalogue writes and the API's free-plan claim.
class PlanInUse(ConflictError):
    """The plan has subscriptions or free-plan claims and cannot be deleted."""

    code = "protected"


def _plan_set_features(plan: Plan, features: list[dict[str, str]]) -> None:
    from .models import Feature

    chosen = []
    for item in features:
        feature, created = Feature.objects.get_or_create(
            name=item["name"], defaults={"description": item.get("description", "")}
        )
        if not created and "description" in item and feature.description != item["description"]:
            feature.description = item["description"]
            feature.full_clean()
            feature.save(update_fields=["description"])
        chosen.append(feature)
    plan.features.set(chosen)


def plan_create(*, data: dict[str, object], features: list[dict[str, str]] | None = None) -> Plan:
    """Create a plan; features are matched by name (created when new)."""
    plan = Plan(**data)
    plan.full_clean()
    with transaction.atomic(using=PLANS_DB):
        plan.save()
        _plan_set_features(plan, features or [])
    return plan


def plan_update(
    *, plan: Plan, data: dict[str, object], features: list[dict[str, str]] | None = None
) -> Plan:
    """Change a plan's fields; `features`, when given, replaces the plan's feature list.

    Existing subscriptions keep the limit they were assigned with.
    """
    for name, value in data.items():
        setattr(plan, name, value)
    plan.full_clean()
    with transaction.atomic(using=PLANS_DB):
        plan.save()
        if features is not None:
            _plan_set_features(plan, features)
    return plan


def plan_delete(*, plan: Plan) -> None:
    """Delete a plan nobody ever subscribed to or claimed; others must be hidden instead."""
    with transaction.atomic(using=PLANS_DB):
        if plan.subscriptions.exists() or plan.free_claims.exists():
            raise PlanInUse(
                "This plan has subscriptions; make it non-public instead of deleting it."
            )
        plan.delete()


def plan_claim_free_once(*, user_id: int, plan: Plan, public_only: bool = False) -> Subscription:
    """A user claims a free plan (portal and API): once ever, never over a running plan.

    A second claim raises FreePlanAlreadyClaimed whatever the current state. A current
    subscription that is not expired (a paid plan, or one an operator disabled) is never
    replaced; the check and the claim run under the lock of the current subscription row.
    `public_only` refuses plans not offered in the catalogue (the portal).
    """
    if not free_plan_claimable(user_id=user_id):
        raise FreePlanAlreadyClaimed("This user has already claimed a free plan.")
    if public_only and not plan.is_public:
        raise ValidationError({"plan": "This plan is not offered in the portal."})
    with transaction.atomic(using=PLANS_DB):
        current = _current_for_update(user_id)
        if current is not None and current.status != SubscriptionStatus.EXPIRED:
            raise ValidationError(
                "You already have a plan; a free plan can be claimed when there is none "
                "or it has expired.",
                code="has_plan",
            )
        return plan_claim_free(user_id=user_id, plan=plan)


# ---------------------------------------------------------------------------------------
# Lifecycle (issue 9): clock-driven sweeps and operator changes. Each writes history.
# ---------------------------------------------------------------------------------------
def subscription_reset_due(*, now: datetime | None = None) -> list[int]:
    """Apply every reset-cycle boundary that has passed (Celery beat).

    Each boundary writes a reset record and zeroes the period; a `limited` user is let
    back in through PlanAssignedEvent. Traffic still in flight from before a boundary is
    later added to that period's record by traffic_apply_batch.
    """
    now = now or timezone.now()
    done: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        for sub in _current_due_for_update(RUNNING_STATUSES, next_reset_at__lte=now):
            if _roll_periods(sub, now):
                sub.save()
                _restriction_sync(subscription=sub)
                done.append(sub.user_id)
    return done


def subscription_start_due(*, now: datetime | None = None) -> list[int]:
    """Start on-hold subscriptions whose first-use deadline has passed (Celery beat)."""
    now = now or timezone.now()
    started: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        on_hold = (SubscriptionStatus.ON_HOLD,)
        for sub in _current_due_for_update(on_hold, hold_deadline__lte=now):
            assert sub.hold_deadline is not None
            _start(sub, sub.hold_deadline, why="hold deadline passed")
            _roll_periods(sub, now)
            current = _settle(sub, now)
            current.save()
            _restriction_sync(subscription=current)
            started.append(sub.user_id)
    return started


def _locked(subscription: Subscription) -> Subscription:
    sub = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if not sub.is_current:
        raise ValidationError("Only a user's current subscription can be changed.")
    return sub


def subscription_top_up(*, subscription: Subscription, bytes_: int, by: str = "") -> Subscription:
    """Add bytes to the current period's allowance.

    The top-up lasts until the period ends (a reset returns the allowance to the plan's
    limit); a limited or throttled user whose usage is now under the allowance is let
    back in at full speed.
    """
    if bytes_ < 1:
        raise ValidationError({"bytes": "Top up by at least one byte."})
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = _locked(subscription)
        if sub.traffic_limit_bytes is None:
            raise ValidationError("This subscription has unlimited traffic; nothing to top up.")
        sub.traffic_limit_bytes += bytes_
        sub.topup_bytes += bytes_
        lifted = sub.status == SubscriptionStatus.LIMITED and not sub.is_exhausted
        if lifted:
            sub.status = SubscriptionStatus.ACTIVE
        sub.save()
        _log(
            sub,
            SubscriptionEventKind.TOPPED_UP,
            now,
            by,
            bytes=bytes_,
            allowance=sub.traffic_limit_bytes,
        )
        if lifted:
            _log(sub, SubscriptionEventKind.LIFTED, now, "topped up")
        _restriction_sync(subscription=sub)
    return sub


def subscription_switch(*, subscription: Subscription, plan: Plan, by: str = "") -> Subscription:
    """Move the current subscription to another plan, keeping its usage and start date.

    The new plan's limit (plus this period's top-ups), speed, device limit, quota action
    and reset cycle apply from now; the expiry is recomputed from the original start with
    the new duration (it may already have passed: then the subscription expires now).
    """
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = _locked(subscription)
        old_plan = sub.plan
        if old_plan.pk == plan.pk:
            raise ValidationError({"plan": "The subscription is already on this plan."})
        sub.plan = plan
        sub.traffic_limit_bytes = (
            None if plan.traffic_limit_bytes is None else plan.traffic_limit_bytes + sub.topup_bytes
        )
        if sub.started_at is not None:
            sub.expires_at = (
                sub.started_at + timedelta(days=plan.duration_days) if plan.duration_days else None
            )
            sub.next_reset_at = _next_reset(sub, now)
        if sub.status == SubscriptionStatus.LIMITED and not sub.is_exhausted:
            sub.status = SubscriptionStatus.ACTIVE
        _log(
            sub,
            SubscriptionEventKind.SWITCHED,
            now,
            f"{old_plan.name} -> {plan.name} {by}".strip(),
            old_plan=old_plan.name,
            plan=plan.name,
            expires_at=_iso(sub.expires_at),
        )
        if sub.status == SubscriptionStatus.EXPIRED and (
            sub.expires_at is None or sub.expires_at > now
        ):
            sub.status = SubscriptionStatus.ACTIVE
        current = _settle(sub, now)
        current.save()
        # The new plan's limits (speed, connections, devices) reach the proxies.
        _restriction_lift(subscription=current)
        _restriction_sync(subscription=current)
    return current


def subscription_enable(*, subscription: Subscription, by: str = "") -> Subscription:
    """Undo an operator's disable: the status follows from the dates and usage again."""
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = _locked(subscription)
        if sub.status != SubscriptionStatus.DISABLED:
            raise ValidationError("This subscription is not disabled.")
        if sub.started_at is None:
            sub.status = SubscriptionStatus.ON_HOLD
        else:
            sub.status = SubscriptionStatus.ACTIVE
        _log(sub, SubscriptionEventKind.ENABLED, now, by)
        _roll_periods(sub, now)
        current = _settle(sub, now)
        current.save()
        _restriction_sync(subscription=current)
    return current


def plan_queue(*, user_id: int, plan: Plan, by: str = "") -> QueuedPlan | Subscription:
    """Queue `plan` to follow the user's current subscription (one queued plan per user;
    queuing again replaces it).

    With no current subscription, or one already expired or cut off at its quota, the
    plan takes over at once and the new Subscription is returned.
    """
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        current = _current_for_update(user_id)
        QueuedPlan.objects.filter(user_id=user_id).delete()
        queued = QueuedPlan.objects.create(user_id=user_id, plan=plan, queued_by=by[:100])
        if current is None:
            queued.delete()
            return plan_assign(user_id=user_id, plan=plan, now=now, by=by)
        current = Subscription.objects.select_related("plan").get(pk=current.pk)
        _log(current, SubscriptionEventKind.QUEUED, now, by, plan=plan.name)
        ended = current.status == SubscriptionStatus.EXPIRED or (
            current.status == SubscriptionStatus.LIMITED and not current.plan.throttles
        )
        if ended:
            renewed = _renew_from_queue(current, now, "queued after the end")
            assert renewed is not None
            return renewed
    return queued


def plan_queue_cancel(*, user_id: int, by: str = "") -> bool:
    """Drop the user's queued plan; False when there was none."""
    with transaction.atomic(using=PLANS_DB):
        queued = QueuedPlan.objects.select_for_update().filter(user_id=user_id).first()
        if queued is None:
            return False
        current = Subscription.objects.filter(user_id=user_id, is_current=True).first()
        if current is not None:
            _log(
                current,
                SubscriptionEventKind.QUEUE_CANCELLED,
                timezone.now(),
                by,
                plan=queued.plan.name,
            )
        queued.delete()
    return True


def subscription_token_get_or_create(*, user_id: int) -> str:
    """The user's subscription-URL token, created on first use."""
    import secrets

    from .models import SubscriptionToken

    with transaction.atomic(using=PLANS_DB):
        row, _ = SubscriptionToken.objects.get_or_create(
            user_id=user_id, defaults={"token": secrets.token_urlsafe(32)}
        )
    return row.token


def subscription_token_rotate(*, user_id: int) -> str:
    """Replace the user's subscription-URL token; the old URL stops working at once."""
    import secrets

    from .models import SubscriptionToken

    token = secrets.token_urlsafe(32)
    with transaction.atomic(using=PLANS_DB):
        SubscriptionToken.objects.update_or_create(user_id=user_id, defaults={"token": token})
    return token
