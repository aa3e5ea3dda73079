"""Where quota is granted: the ledger of bytes each proxy instance may still forward.

Runs inside the traffic batch's transaction, after the batch's deltas were billed, so
every decision sees the usage it accounts for (plans.services.traffic). In order:

1. each delta from an instance takes its bytes off what that instance holds;
2. a return sets what the instance holds to zero (unless a later grant went out);
3. a request sets what the instance holds to what it reports (every byte it forwarded
   before the request came in a delta ahead of it), then grants at most what the quota
   has left once the subscription's usage and every other instance's unexpired holding
   are taken off.

So the sum of what all instances hold plus the usage never exceeds the limit (plus
PLANS_GRANT_TOLERANCE_BYTES). One locked read of the users' ledger rows, one write.
A grant held by an instance that stops answering counts until PLANS_GRANT_VALIDITY_SECONDS
+ PLANS_GRANT_GRACE_SECONDS after it was made, then returns to the pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from goproxy_site.events import schemas
from plans.models import RestrictionReason, SubscriptionStatus

from . import bulk

MS = 1000  # microseconds per millisecond


@dataclass(frozen=True, slots=True)
class QuotaView:
    """What a user's current subscription allows, after the batch's deltas."""

    status: str | None  # None: no current subscription
    limit: int | None = None
    used: int = 0
    throttle_bps: int | None = None  # the speed a limited throttling plan holds to
    expires_at: int | None = None  # microseconds


class _Entry:
    """One ledger row as the batch changes it."""

    __slots__ = ("changed", "expires_at", "granted", "held", "request_id", "returned")

    def __init__(
        self,
        held: int = 0,
        request_id: int = 0,
        granted: int = 0,
        returned: int = 0,
        expires_at: int | None = None,
    ) -> None:
        self.held = held
        self.request_id = request_id
        self.granted = granted
        self.returned = returned
        self.expires_at = expires_at
        self.changed = False

    def holding(self, now: int) -> int:
        """What it holds that still counts against the quota at `now`."""
        if self.expires_at is None or self.expires_at <= now:
            return 0
        return self.held


def grant_users(
    requests: Iterable[schemas.QuotaGrantRequest], returns: Iterable[schemas.QuotaGrantReturn]
) -> set[int]:
    return {r.user_id for r in requests} | {r.user_id for r in returns}


def grants_apply(
    *,
    spent: dict[tuple[str, int], int],
    requests: Sequence[schemas.QuotaGrantRequest],
    returns: Sequence[schemas.QuotaGrantReturn],
    views: dict[int, QuotaView],
    now: datetime,
) -> list[schemas.QuotaGrant]:
    """Update the ledger for the batch and answer its requests (see the module docstring).

    `spent` is the bytes each (instance, user) forwarded in the batch's fresh deltas, for
    users whose plan has a byte limit; `views` the users' current subscriptions.
    """
    users = grant_users(requests, returns) | {u for _i, u in spent}
    if not users:
        return []
    now_us = bulk.us(now)
    ledger: dict[int, dict[str, _Entry]] = {}
    for instance, user_id, held, request_id, granted, returned, expires in bulk.ledger_lock(
        sorted(users)
    ):
        ledger.setdefault(user_id, {})[instance] = _Entry(
            held, request_id, granted, returned, expires
        )
    for (instance, user_id), n in spent.items():
        entry = ledger.get(user_id, {}).get(instance)
        if entry is not None and entry.held:
            entry.held = max(0, entry.held - n)
            entry.changed = True
    for ret in returns:
        entry = ledger.get(ret.user_id, {}).get(ret.instance_id)
        if entry is None:
            continue
        entry.held = (
            0 if ret.request_id >= entry.request_id else max(0, entry.held - ret.returned_bytes)
        )
        entry.returned += ret.returned_bytes
        entry.changed = True
    answers = []
    for req in sorted(requests, key=lambda r: (r.user_id, r.request_id)):
        entries = ledger.setdefault(req.user_id, {})
        entry = entries.get(req.instance_id)
        if entry is None:
            entry = entries[req.instance_id] = _Entry()
        if req.request_id <= entry.request_id:
            continue  # a redelivered request: answered before
        others = sum(e.holding(now_us) for i, e in entries.items() if i != req.instance_id)
        answer = _decide(req, views.get(req.user_id, QuotaView(None)), others, now_us)
        entry.held = (
            req.held_bytes + answer.granted_bytes if answer.mode == schemas.GRANT_QUOTA else 0
        )
        entry.granted += answer.granted_bytes
        entry.request_id = req.request_id
        entry.expires_at = now_us + int(
            (settings.PLANS_GRANT_VALIDITY_SECONDS + settings.PLANS_GRANT_GRACE_SECONDS) * 1e6
        )
        entry.changed = True
        answers.append(answer)
    bulk.ledger_write(
        [
            (instance, user_id, e.held, e.request_id, e.granted, e.returned, e.expires_at)
            for user_id, entries in ledger.items()
            for instance, e in entries.items()
            if e.changed
        ],
        now,
    )
    return answers


STATUS_REFUSAL = {
    SubscriptionStatus.EXPIRED: RestrictionReason.EXPIRED,
    SubscriptionStatus.DISABLED: RestrictionReason.DISABLED,
}


def _decide(
    req: schemas.QuotaGrantRequest, view: QuotaView, others: int, now: int
) -> schemas.QuotaGrant:
    """The answer to one request, given what the other instances hold."""

    def answer(mode: str, **fields: int | str) -> schemas.QuotaGrant:
        return schemas.QuotaGrant(
            user_id=req.user_id,
            instance_id=req.instance_id,
            request_id=req.request_id,
            mode=mode,
            **fields,  # type: ignore[arg-type]  # the fields of QuotaGrant, checked by it
        )

    if view.status is None:
        return answer(schemas.GRANT_REFUSED, reason=RestrictionReason.NO_PLAN)
    refusal = STATUS_REFUSAL.get(SubscriptionStatus(view.status))
    if refusal is not None:
        return answer(schemas.GRANT_REFUSED, reason=refusal)
    ends_in = 0
    if view.expires_at is not None:
        ends_in = (view.expires_at - now) // MS
        if ends_in <= 0:
            return answer(schemas.GRANT_REFUSED, reason=RestrictionReason.EXPIRED)
    if view.status == SubscriptionStatus.LIMITED:
        if view.throttle_bps:
            return answer(
                schemas.GRANT_THROTTLE, speed_bps=view.throttle_bps, plan_ends_in_ms=ends_in
            )
        return answer(schemas.GRANT_REFUSED, reason=RestrictionReason.LIMIT)
    if view.limit is None:
        return answer(schemas.GRANT_UNLIMITED, plan_ends_in_ms=ends_in)
    left = view.limit - view.used
    if left <= 0:
        return answer(schemas.GRANT_REFUSED, reason=RestrictionReason.LIMIT)
    free = left + settings.PLANS_GRANT_TOLERANCE_BYTES - others - max(0, req.held_bytes)
    granted = max(0, min(req.want_bytes, free, settings.PLANS_GRANT_MAX_BYTES))
    return answer(
        schemas.GRANT_QUOTA,
        granted_bytes=granted,
        valid_for_ms=int(settings.PLANS_GRANT_VALIDITY_SECONDS * 1000),
        plan_ends_in_ms=ends_in,
    )
