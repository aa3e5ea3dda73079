"""Where a delta is billed: proxy traffic applied to subscriptions exactly once.

The plan-controller hands each consumed batch of UserConsumedTrafficEvent to
`traffic_apply_batch`, which adds the bytes to the period they happened in, keeps the
hourly buckets, stores per-(proxy instance, user) sequence marks in the same
transaction (so a redelivered delta is a no-op), and lets the status machine react.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB
from goproxy_site.events import schemas
from plans import notifications
from plans.models import (
    RestrictionReason,
    Subscription,
    SubscriptionStatus,
    TrafficSequence,
    UnplannedUsage,
    UsageBucket,
    UsageReset,
)

from .lifecycle import clock_start, periods_roll, settle
from .restrictions import restriction_set, restriction_sync


@dataclass(frozen=True)
class TrafficBatchResult:
    applied: int = 0
    skipped: int = 0
    users: int = 0
    restricted: list[int] = field(default_factory=list)


Delta = tuple[datetime, int, int]  # (occurred_at, bytes_up, bytes_down)
# Start of an hour (UTC) -> [bytes_up, bytes_down] moved in it.
HourlyBytes = dict[datetime, list[int]]


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _add_hourly(
    model: type[UsageBucket] | type[UnplannedUsage],
    lookup: Mapping[str, object],
    hours: HourlyBytes,
) -> None:
    for hour, (up, down) in hours.items():
        updated = model.objects.filter(hour=hour, **lookup).update(
            bytes_up=F("bytes_up") + up, bytes_down=F("bytes_down") + down
        )
        if not updated:
            model.objects.create(hour=hour, bytes_up=up, bytes_down=down, **lookup)


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
        hours: HourlyBytes = {}
        for at, up, down in deltas:
            bucket = hours.setdefault(_hour(at), [0, 0])
            bucket[0] += up
            bucket[1] += down
        _add_hourly(UnplannedUsage, {"user_id": user_id}, hours)
        return restriction_set(user_id=user_id, reason=RestrictionReason.NO_PLAN)
    touched: dict[int, tuple[Subscription, HourlyBytes]] = {}
    first_used = sub.bytes_used
    first_sub = sub
    first_period = sub.period_started_at
    for at, up, down in deltas:
        if sub.status == SubscriptionStatus.ON_HOLD:
            start = min(at, sub.hold_deadline) if sub.hold_deadline else at
            clock_start(sub, start, why="first use" if start == at else "hold deadline passed")
        periods_roll(sub, at)
        sub = settle(sub, at)
        periods_roll(sub, at)
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
        sub = settle(sub, at)
    sub = settle(sub, now)
    for s, hourly in touched.values():
        s.save()
        _add_hourly(UsageBucket, {"user_id": user_id, "subscription": s}, hourly)
    sub.save()
    same_period = sub.pk == first_sub.pk and sub.period_started_at == first_period
    before = first_used if same_period else 0
    notifications.quota_crossed(subscription=sub, used_before=before)
    return restriction_sync(subscription=sub)


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


def traffic_sequences_prune(*, older_than: timedelta) -> int:
    """Forget high-water marks of proxy instances silent for longer than `older_than`."""
    with transaction.atomic(using=PLANS_DB):
        deleted, _ = TrafficSequence.objects.filter(
            updated_at__lt=timezone.now() - older_than
        ).delete()
    return deleted
