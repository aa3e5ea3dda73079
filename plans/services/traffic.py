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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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

from . import bulk, grants
from .bulk import HOUR_US
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
    # Events refused before anything was written, with the reason (dead-lettered).
    rejected: list[tuple[schemas.Event, str]] = field(default_factory=list)
    # Answers to the batch's grant requests, to send once the transaction committed.
    answers: list[schemas.QuotaGrant] = field(default_factory=list)


# (occurred_at in microseconds since the epoch, bytes_up, bytes_down)
Delta = tuple[int, int, int]
Rejected = list[tuple[schemas.Event, str]]
# Statuses that leave a user open (no restriction, no throttle).
OPEN_STATUSES = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.ON_HOLD})
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


def grant_problem(event: schemas.QuotaGrantRequest | schemas.QuotaGrantReturn) -> str | None:
    """Why a grant request or return cannot be applied, or None."""
    if event.user_id <= 0:
        return f"user_id must be positive, not {event.user_id}"
    if not event.instance_id:
        return "empty instance_id"
    if isinstance(event, schemas.QuotaGrantRequest):
        if event.request_id <= 0:
            return f"request_id must be positive, not {event.request_id}"
        if event.held_bytes < 0 or event.want_bytes < 0:
            return f"negative bytes (held {event.held_bytes}, want {event.want_bytes})"
    elif event.request_id < 0 or event.returned_bytes < 0:
        return f"negative request_id or bytes ({event.request_id}, {event.returned_bytes})"
    return None


E = TypeVar(
    "E", schemas.UserConsumedTrafficEvent, schemas.QuotaGrantRequest, schemas.QuotaGrantReturn
)


def _screen(events: Sequence[E], problem_of: Callable[[E], str | None]) -> tuple[list[E], Rejected]:
    good: list[E] = []
    rejected: Rejected = []
    for event in events:
        problem = problem_of(event)
        if problem is None:
            good.append(event)
        else:
            rejected.append((event, problem))
    return good, rejected


def _known(events: list[E], rejected: Rejected) -> list[E]:
    """`events` of users the accounts DB knows; the others go to `rejected`."""
    unknown = {e.user_id for e in events} - _KNOWN_USERS
    if not unknown:
        return events
    found = user_ids_existing(user_ids=unknown)
    if len(_KNOWN_USERS) + len(found) > KNOWN_USERS_MAX:
        _KNOWN_USERS.clear()
    _KNOWN_USERS.update(found)
    missing = unknown - found
    if not missing:
        return events
    rejected += [(e, f"unknown user {e.user_id}") for e in events if e.user_id in missing]
    return [e for e in events if e.user_id not in missing]


def _fresh(
    good: Sequence[schemas.UserConsumedTrafficEvent], now: datetime
) -> tuple[dict[int, list[Delta]], int, dict[Pair, int]]:
    """Raise the sequence marks and keep each delta not applied before, per user in time
    order; returns them with the count of redeliveries skipped."""
    by_pair: dict[Pair, list[schemas.UserConsumedTrafficEvent]] = {}
    for d in good:
        pair = (d.instance_id, d.user_id)
        group = by_pair.get(pair)
        if group is None:
            by_pair[pair] = [d]
        else:
            group.append(d)
    top = {}
    for pair, group in by_pair.items():
        if len(group) > 1:
            group.sort(key=lambda d: d.seq)
        top[pair] = group[-1].seq
    marks = bulk.marks_advance(top, now)
    per_user: dict[int, list[Delta]] = {}
    spent: dict[Pair, int] = {}
    skipped = 0
    to_us = bulk.us
    for pair, group in by_pair.items():
        mark = marks.get(pair, 0)
        user_deltas = per_user.get(pair[1])
        if user_deltas is None:
            user_deltas = per_user[pair[1]] = []
        moved = 0
        for d in group:
            if d.seq <= mark:
                skipped += 1  # applied by an earlier batch, or twice in this one
                continue
            mark = d.seq
            user_deltas.append((to_us(d.occurred_at), d.bytes_up, d.bytes_down))
            moved += d.bytes_up + d.bytes_down
        if moved:
            spent[pair] = moved
    for user_id in [u for u, deltas in per_user.items() if not deltas]:
        del per_user[user_id]
    for user_deltas in per_user.values():
        if len(user_deltas) > 1:
            user_deltas.sort()
    return per_user, skipped, spent


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
        "next_mark",
        "next_reset_at",
        "period_started_at",
        "plan_id",
        "quiet_until",
        "status",
        "user_id",
    )

    id: int
    user_id: int
    plan_id: int
    status: str
    is_current: bool
    bytes_up: int
    bytes_down: int
    limit: int | None
    # Moments in microseconds since the epoch.
    current_from: int
    current_until: int | None
    period_started_at: int | None
    next_reset_at: int | None
    expires_at: int | None

    def __init__(self, values: bulk.Row) -> None:
        (
            self.id,
            self.user_id,
            self.plan_id,
            self.status,
            self.is_current,
            self.bytes_up,
            self.bytes_down,
            self.limit,
            self.current_from,
            self.current_until,
            self.period_started_at,
            self.next_reset_at,
            self.expires_at,
        ) = values
        self.add_up = self.add_down = self.life_up = self.life_down = 0
        # Until when nothing but bytes can happen to it (None: forever): the first of the
        # next reset and the expiry while its clock runs; on hold, never.
        self.quiet_until: int | None = None
        if self.status == SubscriptionStatus.ON_HOLD:
            self.quiet_until = -1
        elif self.status in RUNNING_STATUSES:
            ends = [m for m in (self.next_reset_at, self.expires_at) if m is not None]
            self.quiet_until = min(ends) if ends else None
        self.next_mark: float | None = None  # usage at which a threshold is reached

    def mark_from(self, percents: Sequence[int]) -> None:
        """The next quota threshold (notification or the limit) above today's usage."""
        limit = self.limit
        if limit is None or self.status != SubscriptionStatus.ACTIVE:
            return
        used = self.bytes_up + self.bytes_down
        mark: float = limit
        for p in percents:
            at = limit * p / 100
            if used < at < mark:
                mark = at
        self.next_mark = mark

    def covers(self, at: int) -> bool:
        return self.current_from <= at and (self.current_until is None or at < self.current_until)

    def quiet(self, at: int) -> bool:
        return self.quiet_until is None or at < self.quiet_until


def _add(table: dict[K, list[int]], key: K, up: int, down: int) -> None:
    entry = table.get(key)
    if entry is None:
        table[key] = [up, down]
    else:
        entry[0] += up
        entry[1] += down


def _covering(rows: Iterable[_Row], at: int) -> _Row | None:
    for row in rows:
        if row.covers(at):
            return row
    return None


class _Batch:
    """The bookkeeping of one traffic batch, from the locked rows to the writes."""

    def __init__(
        self, per_user: dict[int, list[Delta]], now: datetime, also: Iterable[int] = ()
    ) -> None:
        self.per_user = per_user
        self.also = set(also) - set(per_user)  # users of grant requests/returns only
        self.now = now
        self.now_us = bulk.us(now)
        self.rows: dict[int, list[_Row]] = {}  # newest first
        self.current: dict[int, _Row] = {}
        # (user, subscription, hour) and (user, hour) -> [up, down]; hours in µs.
        self.buckets: dict[tuple[int, int, int], list[int]] = {}
        self.unplanned: dict[tuple[int, int], list[int]] = {}
        # subscription -> (reset record, period start, end) of its closed periods.
        self.periods: dict[int, list[tuple[int, int, int]]] = {}
        self.resets: dict[int, list[int]] = {}
        self.slow: set[int] = set()
        self.slow_current: dict[int, Subscription | None] = {}
        self.plans: dict[int, tuple[str, int | None]] = {}
        self.restricted: list[int] = []

    def lock(self) -> None:
        firsts = [deltas[0][0] for deltas in self.per_user.values()]
        since = bulk.moment(min(firsts)) if firsts else self.now
        percents = settings.PLANS_NOTIFY_QUOTA_PERCENTS
        users = [*self.per_user, *self.also]
        for values in bulk.subscriptions_lock(users, since):
            row = _Row(values)
            rows = self.rows.get(row.user_id)
            if rows is None:
                self.rows[row.user_id] = [row]
            else:
                rows.append(row)
                rows.sort(key=lambda r: r.current_from, reverse=True)
            if row.is_current:
                self.current[row.user_id] = row
                row.mark_from(percents)
        self.plans = bulk.plans_of(sorted({row.plan_id for row in self.current.values()}))

    def bill_fast(self) -> None:
        """Bill every user whose deltas need no status machine; mark the others slow."""
        now = self.now_us
        buckets = self.buckets
        for user_id, deltas in self.per_user.items():
            rows = self.rows.get(user_id)
            current = self.current.get(user_id)
            if rows is not None and len(rows) == 1 and current is not None:
                # The usual user: one subscription, all of it in its current period.
                first, last = deltas[0][0], deltas[-1][0]
                start = current.period_started_at
                if (
                    first >= current.current_from
                    and (start is None or first >= start)
                    and current.quiet(last)
                    and current.quiet(now)
                ):
                    if len(deltas) == 1:
                        at, up, down = deltas[0]
                    else:
                        up = sum(d[1] for d in deltas)
                        down = sum(d[2] for d in deltas)
                    mark = current.next_mark
                    if (
                        mark is not None
                        and current.bytes_up + current.bytes_down + up + down >= mark
                    ):
                        self.slow.add(user_id)
                        continue
                    current.add_up += up
                    current.add_down += down
                    current.life_up += up
                    current.life_down += down
                    sub_id = current.id
                    for at, d_up, d_down in deltas:
                        _add(buckets, (user_id, sub_id, at - at % HOUR_US), d_up, d_down)
                    continue
            if self._needs_machine(current, deltas, now):
                self.slow.add(user_id)
                continue
            for at, up, down in deltas:
                row = _covering(rows or (), at)
                if row is None:
                    _add(self.unplanned, (user_id, at - at % HOUR_US), up, down)
                    continue
                row.life_up += up
                row.life_down += down
                _add(buckets, (user_id, row.id, at - at % HOUR_US), up, down)
                start = row.period_started_at
                reset_id = None if start is None or at >= start else self.closed_period(row, at)
                if reset_id is None:
                    row.add_up += up
                    row.add_down += down
                else:
                    _add(self.resets, reset_id, up, down)

    def _needs_machine(self, current: _Row | None, deltas: list[Delta], now: int) -> bool:
        if current is None:
            return False
        added = 0
        start = current.period_started_at
        for at, up, down in deltas:
            if current.covers(at):
                if not current.quiet(at):
                    return True
                if start is None or at >= start or self.closed_period(current, at) is None:
                    added += up + down
        if not current.quiet(now):
            return True
        mark = current.next_mark
        return mark is not None and current.bytes_up + current.bytes_down + added >= mark

    def find_closed_periods(self) -> None:
        """The reset records late deltas may belong to: bytes moved before a subscription's
        current period began go to the record of the period they were moved in (one
        query for all)."""
        since: int | None = None
        late_subs: set[int] = set()
        for user_id, deltas in self.per_user.items():
            for row in self.rows.get(user_id, ()):
                start = row.period_started_at
                if start is not None and deltas[0][0] < start:
                    late_subs.add(row.id)
                    since = deltas[0][0] if since is None else min(since, deltas[0][0])
        if since is None:
            return
        for reset_id, sub_id, start, end in bulk.resets_of(sorted(late_subs), bulk.moment(since)):
            self.periods.setdefault(sub_id, []).append((reset_id, start, end))

    def closed_period(self, row: _Row, at: int) -> int | None:
        """The reset record of `row`'s closed period holding `at` (None: none, the bytes
        count to its current period)."""
        for reset_id, start, end in self.periods.get(row.id, ()):
            if start <= at < end:
                return reset_id
        return None

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
        current = next((s for s in subs if s.is_current), None)
        was_current = {s.pk for s in subs if s.is_current}
        touched: dict[int, Subscription] = {}
        first = current
        used_before = current.bytes_used if current is not None else 0
        period_before = current.period_started_at if current is not None else None
        for at_us, up, down in deltas:
            at = bulk.moment(at_us)
            hour = at_us - at_us % HOUR_US
            sub = next(
                (
                    s
                    for s in subs
                    if s.current_from <= at and (s.current_until is None or at < s.current_until)
                ),
                None,
            )
            if sub is None:
                _add(self.unplanned, (user_id, hour), up, down)
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
            _add(self.buckets, (user_id, sub.pk, hour), up, down)
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
        self.slow_current[user_id] = current
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
        current = self.current
        plans = self.plans
        actual = bulk.restrictions_of(users)
        open_state = ("", None)
        fix_subs: list[int] = []
        for user_id in users:
            row = current.get(user_id)
            if row is not None and row.status in OPEN_STATUSES and user_id not in actual:
                continue  # the usual user: open, and never restricted
            if actual.get(user_id, open_state) == _wanted(row, plans):
                continue
            if row is None:
                if restriction_set(user_id=user_id, reason=RestrictionReason.NO_PLAN):
                    self.restricted.append(user_id)
            else:
                fix_subs.append(row.id)
        for sub in Subscription.objects.select_related("plan").filter(pk__in=fix_subs):
            if restriction_sync(subscription=sub):
                self.restricted.append(sub.user_id)


def _views(batch: _Batch) -> dict[int, grants.QuotaView]:
    """Each user's current subscription as grants see it, after the batch's bytes."""
    views: dict[int, grants.QuotaView] = {}
    for user_id in [*batch.per_user, *batch.also]:
        if user_id in batch.slow:
            sub = batch.slow_current.get(user_id)
            if sub is None:
                views[user_id] = grants.QuotaView(None)
                continue
            views[user_id] = grants.QuotaView(
                status=sub.status,
                limit=sub.traffic_limit_bytes,
                used=sub.bytes_used,
                throttle_bps=sub.plan.throttle_speed_bps if sub.plan.throttles else None,
                expires_at=bulk.us(sub.expires_at) if sub.expires_at else None,
            )
            continue
        row = batch.current.get(user_id)
        if row is None:
            views[user_id] = grants.QuotaView(None)
            continue
        action, speed = batch.plans.get(row.plan_id, (QuotaAction.CUT, None))
        views[user_id] = grants.QuotaView(
            status=row.status,
            limit=row.limit,
            used=row.bytes_up + row.bytes_down + row.add_up + row.add_down,
            throttle_bps=speed if action == QuotaAction.THROTTLE and speed else None,
            expires_at=row.expires_at,
        )
    return views


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
    *,
    deltas: Sequence[schemas.UserConsumedTrafficEvent],
    grant_requests: Sequence[schemas.QuotaGrantRequest] = (),
    grant_returns: Sequence[schemas.QuotaGrantReturn] = (),
    now: datetime | None = None,
) -> TrafficBatchResult:
    """Apply proxy traffic deltas exactly once and the grant requests and returns that
    came with them, in one plans-DB transaction (see the module docstring and grants.py);
    returns what was applied, skipped, restricted, rejected, and the grant answers."""
    now = now or timezone.now()
    good, rejected = _screen(deltas, lambda d: delta_problem(d, now))
    requests, refused = _screen(grant_requests, grant_problem)
    returns, refused_returns = _screen(grant_returns, grant_problem)
    rejected += refused + refused_returns
    good = _known(good, rejected)
    requests = _known(requests, rejected)
    returns = _known(returns, rejected)
    if not (good or requests or returns):
        return TrafficBatchResult(rejected=rejected)
    with transaction.atomic(using=PLANS_DB):
        per_user, skipped, spent = _fresh(good, now) if good else ({}, 0, {})
        batch = _Batch(per_user, now, also=grants.grant_users(requests, returns))
        if per_user or batch.also:
            batch.lock()
            batch.find_closed_periods()
            batch.bill_fast()
            batch.bill_slow()
            batch.write()
            batch.sync_restrictions()
        answers = grants.grants_apply(
            spent={p: n for p, n in spent.items() if _gated(batch, p[1])},
            requests=requests,
            returns=returns,
            views=_views(batch),
            now=now,
        )
    return TrafficBatchResult(
        applied=len(good) - skipped,
        skipped=skipped,
        users=len(per_user),
        restricted=sorted(batch.restricted),
        rejected=rejected,
        answers=answers,
    )


def _gated(batch: _Batch, user_id: int) -> bool:
    """Whether the user's current subscription has a byte limit (so proxies hold grants)."""
    if user_id in batch.slow:
        sub = batch.slow_current.get(user_id)
        return sub is not None and sub.traffic_limit_bytes is not None
    row = batch.current.get(user_id)
    return row is not None and row.limit is not None


def traffic_sequences_prune(*, older_than: timedelta) -> int:
    """Forget high-water marks of proxy instances silent for longer than `older_than`."""
    with transaction.atomic(using=PLANS_DB):
        deleted, _ = TrafficSequence.objects.filter(
            updated_at__lt=timezone.now() - older_than
        ).delete()
    return deleted
