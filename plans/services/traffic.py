"""Where a delta is billed: proxy traffic applied to subscriptions exactly once.

The plan-controller hands each consumed batch of UserConsumedTrafficEvent to
`traffic_apply_batch`. One plans-DB transaction, a fixed number of statements whatever
the number of users (bulk.py):

1. screen: a delta with negative bytes, a bad id or seq, an `occurred_at` further in
   the future than PLANS_TRAFFIC_MAX_SKEW_SECONDS, or a user the accounts DB does not
   know is rejected with the reason (the caller dead-letters it), never applied;
2. lock and raise the per-(proxy instance, user) sequence marks; a delta at or below
   its mark is a redelivery and is skipped;
3. lock every subscription the batch can bill (current, or current at some moment since
   the batch's oldest delta), in user order;
4. bill each delta to the subscription that was current at its `occurred_at` (never one
   that started later), in the period it happened in (a closed period's reset record
   for late bytes); no subscription then means the user's unplanned usage;
5. write back set-based: hourly buckets and unplanned usage upserted with increments,
   one update of the subscriptions that changed, reset records incremented;
6. make each user's restriction match their current subscription (outbox events).

A user whose deltas reach a point where the status machine acts (first use of an
on-hold plan, a reset boundary, expiry, a quota threshold) is billed through the
lifecycle services on model instances instead; that happens about once per period per
user, not per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.selectors import user_ids_existing
from goproxy_site.db_routers import PLANS_DB
from goproxy_site.events import schemas
from plans import notifications
from plans.models import (
    QuotaAction,
    RestrictionReason,
    Subscription,
    SubscriptionStatus,
    TrafficSequence,
    UsageReset,
)

from . import bulk
from .lifecycle import RUNNING_STATUSES, clock_start, periods_roll, settle
from .restrictions import STATUS_RESTRICTION, restriction_set, restriction_sync

logger = logging.getLogger(__name__)

# Users known to exist in the accounts DB (ids are never reused), so the existence check
# of a batch asks the accounts DB only about ids it has not seen yet.
_KNOWN_USERS: set[int] = set()
KNOWN_USERS_MAX = 2_000_000


@dataclass(frozen=True)
class TrafficBatchResult:
    applied: int = 0
    skipped: int = 0
    users: int = 0
    restricted: list[int] = field(default_factory=list)
    # Deltas refused before anything was written, with the reason (dead-lettered).
    rejected: list[tuple[schemas.UserConsumedTrafficEvent, str]] = field(default_factory=list)


Delta = tuple[datetime, int, int]  # (occurred_at, bytes_up, bytes_down)
K = TypeVar("K")
Pair = tuple[str, int]  # (proxy instance, user)


def delta_problem(delta: schemas.UserConsumedTrafficEvent, now: datetime) -> str | None:
    """Why `delta` cannot be applied, or None (existence of the user is checked apart)."""
    if delta.user_id <= 0:
        return f"user_id must be positive, not {delta.user_id}"
    if delta.bytes_up < 0 or delta.bytes_down < 0:
        return f"negative bytes (up {delta.bytes_up}, down {delta.bytes_down})"
    if delta.seq <= 0:
        return f"seq must be positive, not {delta.seq}"
    if not delta.instance_id:
        return "empty instance_id"
    ahead = (delta.occurred_at - now).total_seconds()
    if ahead > settings.PLANS_TRAFFIC_MAX_SKEW_SECONDS:
        return (
            f"occurred_at {delta.occurred_at.isoformat()} is {ahead:.0f} s in the future "
            f"(more than PLANS_TRAFFIC_MAX_SKEW_SECONDS={settings.PLANS_TRAFFIC_MAX_SKEW_SECONDS})"
        )
    return None


def _screen(
    deltas: Sequence[schemas.UserConsumedTrafficEvent], now: datetime
) -> tuple[
    list[schemas.UserConsumedTrafficEvent], list[tuple[schemas.UserConsumedTrafficEvent, str]]
]:
    good: list[schemas.UserConsumedTrafficEvent] = []
    rejected: list[tuple[schemas.UserConsumedTrafficEvent, str]] = []
    for d in deltas:
        problem = delta_problem(d, now)
        if problem is None:
            good.append(d)
        else:
            rejected.append((d, problem))
    unknown = {d.user_id for d in good} - _KNOWN_USERS
    if unknown:
        found = user_ids_existing(user_ids=unknown)
        if len(_KNOWN_USERS) + len(found) > KNOWN_USERS_MAX:
            _KNOWN_USERS.clear()
        _KNOWN_USERS.update(found)
        missing = unknown - found
        if missing:
            rejected += [(d, f"unknown user {d.user_id}") for d in good if d.user_id in missing]
            good = [d for d in good if d.user_id not in missing]
    return good, rejected


def _fresh(
    good: Sequence[schemas.UserConsumedTrafficEvent], now: datetime
) -> tuple[dict[int, list[Delta]], int]:
    """Raise the sequence marks and keep each delta not applied before, per user in time
    order; returns them with the count of redeliveries skipped."""
    top: dict[Pair, int] = {}
    for d in good:
        pair = (d.instance_id, d.user_id)
        if d.seq > top.get(pair, 0):
            top[pair] = d.seq
    marks = bulk.marks_advance(top, now)
    applied: dict[Pair, int] = {}
    per_user: dict[int, list[Delta]] = {}
    skipped = 0
    for d in sorted(good, key=lambda d: (d.instance_id, d.user_id, d.seq)):
        pair = (d.instance_id, d.user_id)
        if d.seq <= applied.get(pair, marks.get(pair, 0)):
            skipped += 1
            continue
        applied[pair] = d.seq
        per_user.setdefault(d.user_id, []).append((d.occurred_at, d.bytes_up, d.bytes_down))
    for user_deltas in per_user.values():
        user_deltas.sort(key=lambda delta: delta[0])
    return per_user, skipped


class _Row:
    """One locked subscription as the batch bills it: its columns and what it adds."""

    __slots__ = (
        "add_down",
        "add_up",
        "bytes_down",
        "bytes_up",
        "current_from",
        "current_until",
        "expires_at",
        "id",
        "is_current",
        "life_down",
        "life_up",
        "limit",
        "next_reset_at",
        "period_started_at",
        "plan_id",
        "status",
        "user_id",
    )

    id: int
    user_id: int
    plan_id: int
    status: str
    is_current: bool
    current_from: datetime
    current_until: datetime | None
    bytes_up: int
    bytes_down: int
    limit: int | None
    period_started_at: datetime | None
    next_reset_at: datetime | None
    expires_at: datetime | None

    def __init__(self, values: bulk.Row) -> None:
        (
            self.id,
            self.user_id,
            self.plan_id,
            self.status,
            self.is_current,
            self.current_from,
            self.current_until,
            self.bytes_up,
            self.bytes_down,
            self.limit,
            self.period_started_at,
            self.next_reset_at,
            self.expires_at,
        ) = values
        self.add_up = self.add_down = self.life_up = self.life_down = 0

    def covers(self, at: datetime) -> bool:
        return self.current_from <= at and (self.current_until is None or at < self.current_until)

    def machine_acts_at(self, at: datetime) -> bool:
        """Whether the status machine has something to do at `at` (slow path)."""
        if self.status == SubscriptionStatus.ON_HOLD:
            return True
        if self.status not in RUNNING_STATUSES:
            return False
        return (self.next_reset_at is not None and self.next_reset_at <= at) or (
            self.expires_at is not None and self.expires_at <= at
        )

    def threshold_crossed(self, added: int, percents: Sequence[int]) -> bool:
        """Whether `added` period bytes reach the limit or a notification threshold."""
        if self.status != SubscriptionStatus.ACTIVE or self.limit is None:
            return False
        before = self.bytes_up + self.bytes_down
        after = before + added
        if after >= self.limit:
            return True
        return any(before < self.limit * p / 100 <= after for p in percents)


class _HourCache(dict[int, datetime]):
    """Start of the UTC hour of a moment, computed once per hour seen in a batch."""

    def of(self, at: datetime) -> datetime:
        key = int(at.timestamp()) // 3600
        hour = self.get(key)
        if hour is None:
            hour = self[key] = datetime.fromtimestamp(key * 3600, UTC)
        return hour


def _add(table: dict[K, list[int]], key: K, up: int, down: int) -> None:
    entry = table.get(key)
    if entry is None:
        table[key] = [up, down]
    else:
        entry[0] += up
        entry[1] += down


def _covering(rows: Iterable[_Row], at: datetime) -> _Row | None:
    for row in rows:
        if row.covers(at):
            return row
    return None


class _Batch:
    """The bookkeeping of one traffic batch, from the locked rows to the writes."""

    def __init__(self, per_user: dict[int, list[Delta]], now: datetime) -> None:
        self.per_user = per_user
        self.now = now
        self.hours = _HourCache()
        self.rows: dict[int, list[_Row]] = {}
        self.buckets: dict[tuple[int, int, datetime], list[int]] = {}
        self.unplanned: dict[tuple[int, datetime], list[int]] = {}
        self.late: list[tuple[_Row, datetime, int, int]] = []
        self.resets: dict[int, list[int]] = {}
        self.slow: set[int] = set()
        self.restricted: list[int] = []

    def lock(self) -> None:
        since = min(deltas[0][0] for deltas in self.per_user.values())
        for values in bulk.subscriptions_lock(list(self.per_user), since):
            row = _Row(values)
            self.rows.setdefault(row.user_id, []).append(row)
        for rows in self.rows.values():
            rows.sort(key=lambda r: r.current_from, reverse=True)

    def bill_fast(self) -> None:
        """Bill every user whose deltas need no status machine; mark the others slow."""
        percents = settings.PLANS_NOTIFY_QUOTA_PERCENTS
        now = self.now
        hour = self.hours.of
        for user_id, deltas in self.per_user.items():
            rows = self.rows.get(user_id, [])
            if self._needs_machine(rows, deltas, percents, now):
                self.slow.add(user_id)
                continue
            for at, up, down in deltas:
                row = _covering(rows, at)
                if row is None:
                    _add(self.unplanned, (user_id, hour(at)), up, down)
                    continue
                row.life_up += up
                row.life_down += down
                _add(self.buckets, (user_id, row.id, hour(at)), up, down)
                if row.period_started_at is not None and at < row.period_started_at:
                    self.late.append((row, at, up, down))
                else:
                    row.add_up += up
                    row.add_down += down

    @staticmethod
    def _needs_machine(
        rows: list[_Row], deltas: list[Delta], percents: Sequence[int], now: datetime
    ) -> bool:
        current = next((r for r in rows if r.is_current), None)
        if current is None:
            return False
        added = 0
        for at, up, down in deltas:
            if current.covers(at):
                if current.machine_acts_at(at):
                    return True
                if current.period_started_at is None or at >= current.period_started_at:
                    added += up + down
        return current.machine_acts_at(now) or current.threshold_crossed(added, percents)

    def resolve_late(self) -> None:
        """Late bytes of a closed period go to its reset record (one query for all)."""
        if not self.late:
            return
        since = min(at for _row, at, _u, _d in self.late)
        periods: dict[int, list[tuple[int, datetime, datetime]]] = {}
        for reset_id, sub_id, start, end in bulk.resets_of(
            sorted({row.id for row, *_ in self.late}), since
        ):
            periods.setdefault(sub_id, []).append((reset_id, start, end))
        for row, at, up, down in self.late:
            reset_id = next(
                (rid for rid, start, end in periods.get(row.id, ()) if start <= at < end), None
            )
            if reset_id is None:
                row.add_up += up  # no record of that period: it counts to the current one
                row.add_down += down
            else:
                _add(self.resets, reset_id, up, down)

    def bill_slow(self) -> None:
        """The status machine's users, on model instances (rows are locked already)."""
        if not self.slow:
            return
        ids = [row.id for user_id in self.slow for row in self.rows.get(user_id, [])]
        models = {
            sub.pk: sub for sub in Subscription.objects.select_related("plan").filter(pk__in=ids)
        }
        for user_id in sorted(self.slow):
            subs = [models[row.id] for row in self.rows.get(user_id, [])]
            if self._bill_with_machine(user_id, subs, self.per_user[user_id]):
                self.restricted.append(user_id)

    def _bill_with_machine(
        self, user_id: int, subs: list[Subscription], deltas: list[Delta]
    ) -> bool:
        hour = self.hours.of
        current = next((s for s in subs if s.is_current), None)
        was_current = {s.pk for s in subs if s.is_current}
        touched: dict[int, Subscription] = {}
        first = current
        used_before = current.bytes_used if current is not None else 0
        period_before = current.period_started_at if current is not None else None
        for at, up, down in deltas:
            sub = next(
                (
                    s
                    for s in subs
                    if s.current_from <= at and (s.current_until is None or at < s.current_until)
                ),
                None,
            )
            if sub is None:
                _add(self.unplanned, (user_id, hour(at)), up, down)
                continue
            if sub.is_current:
                if sub.status == SubscriptionStatus.ON_HOLD:
                    start = min(at, sub.hold_deadline) if sub.hold_deadline else at
                    why = "first use" if start == at else "hold deadline passed"
                    clock_start(sub, start, why=why)
                periods_roll(sub, at)
                sub = self._settled(sub, at, subs)
                periods_roll(sub, at)
            touched[sub.pk] = sub
            _add(self.buckets, (user_id, sub.pk, hour(at)), up, down)
            sub.lifetime_bytes_up += up
            sub.lifetime_bytes_down += down
            if sub.period_started_at is not None and at < sub.period_started_at:
                if _late_traffic(sub, at, up, down):
                    continue
            sub.bytes_up += up
            sub.bytes_down += down
            if sub.is_current:
                sub = self._settled(sub, at, subs)
        current = next((s for s in subs if s.is_current), None)
        if current is not None:
            current = self._settled(current, self.now, subs)
            touched[current.pk] = current
        for pk, sub in touched.items():
            if pk in was_current and not sub.is_current:
                continue  # retired by a queued plan's take-over, which saved it
            sub.save()
        if current is None:
            return restriction_set(user_id=user_id, reason=RestrictionReason.NO_PLAN)
        same_period = current is first and current.period_started_at == period_before
        notifications.quota_crossed(
            subscription=current, used_before=used_before if same_period else 0
        )
        return restriction_sync(subscription=current)

    @staticmethod
    def _settled(sub: Subscription, at: datetime, subs: list[Subscription]) -> Subscription:
        after = settle(sub, at)
        if after is not sub:
            subs.insert(0, after)  # a queued plan took over at `at`
        return after

    def write(self) -> None:
        """The set-based writes of the fast path, and everyone's hourly buckets."""
        now = self.now
        changed = [
            (row.id, row.add_up, row.add_down, row.life_up, row.life_down)
            for user_id, rows in self.rows.items()
            if user_id not in self.slow
            for row in rows
            if row.life_up or row.life_down
        ]
        bulk.subscriptions_add(changed, now)
        bulk.resets_add([(rid, up, down) for rid, (up, down) in self.resets.items()])
        bulk.buckets_add(
            [(u, sub_id, hour, up, down) for (u, sub_id, hour), (up, down) in self.buckets.items()]
        )
        bulk.unplanned_add(
            [(u, hour, up, down) for (u, hour), (up, down) in self.unplanned.items()]
        )

    def sync_restrictions(self) -> None:
        """Restrictions of the fast-path users, compared for all in one query; the few
        that differ from what their current subscription implies are set."""
        users = [u for u in self.per_user if u not in self.slow]
        if not users:
            return
        plan_ids = {r.plan_id for u in users for r in self.rows.get(u, []) if r.is_current}
        plans = bulk.plans_of(sorted(plan_ids))
        actual = bulk.restrictions_of(users)
        fix_subs: list[int] = []
        for user_id in users:
            current = next((r for r in self.rows.get(user_id, []) if r.is_current), None)
            want = _wanted(current, plans)
            if actual.get(user_id, ("", None)) == want:
                continue
            if current is None:
                if restriction_set(user_id=user_id, reason=RestrictionReason.NO_PLAN):
                    self.restricted.append(user_id)
            else:
                fix_subs.append(current.id)
        for sub in Subscription.objects.select_related("plan").filter(pk__in=fix_subs):
            if restriction_sync(subscription=sub):
                self.restricted.append(sub.user_id)


def _wanted(
    current: _Row | None, plans: dict[int, tuple[str, int | None]]
) -> tuple[str, int | None]:
    """The (reason, throttle) a user's current subscription implies for the proxies."""
    if current is None:
        return RestrictionReason.NO_PLAN, None
    if current.status == SubscriptionStatus.LIMITED:
        action, speed = plans.get(current.plan_id, (QuotaAction.CUT, None))
        if action == QuotaAction.THROTTLE and speed:
            return "", speed
    reason = STATUS_RESTRICTION.get(SubscriptionStatus(current.status))
    return (reason or ""), None


def _late_traffic(sub: Subscription, at: datetime, up: int, down: int) -> bool:
    """Bytes moved in an already closed period go to that period's reset record."""
    updated = UsageReset.objects.filter(
        subscription=sub, period_start__lte=at, period_end__gt=at
    ).update(bytes_up=F("bytes_up") + up, bytes_down=F("bytes_down") + down)
    return bool(updated)


def traffic_apply_batch(
    *, deltas: Sequence[schemas.UserConsumedTrafficEvent], now: datetime | None = None
) -> TrafficBatchResult:
    """Apply proxy traffic deltas exactly once, in one plans-DB transaction (see the
    module docstring); returns what was applied, skipped, restricted and rejected."""
    now = now or timezone.now()
    good, rejected = _screen(deltas, now)
    if not good:
        return TrafficBatchResult(rejected=rejected)
    with transaction.atomic(using=PLANS_DB):
        per_user, skipped = _fresh(good, now)
        if not per_user:
            return TrafficBatchResult(skipped=skipped, rejected=rejected)
        batch = _Batch(per_user, now)
        batch.lock()
        batch.bill_fast()
        batch.resolve_late()
        batch.bill_slow()
        batch.write()
        batch.sync_restrictions()
    return TrafficBatchResult(
        applied=len(good) - skipped,
        skipped=skipped,
        users=len(per_user),
        restricted=sorted(batch.restricted),
        rejected=rejected,
    )


def traffic_sequences_prune(*, older_than: timedelta) -> int:
    """Forget high-water marks of proxy instances silent for longer than `older_than`."""
    with transaction.atomic(using=PLANS_DB):
        deleted, _ = TrafficSequence.objects.filter(
            updated_at__lt=timezone.now() - older_than
        ).delete()
    return deleted
