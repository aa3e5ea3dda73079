"""Where a restriction is published: the proxy-facing state of each user.

One UserRestriction row per user holds what the proxies enforce (refused for a reason,
held to a speed, or open) and a version. Every change bumps the version and queues one
event in the plans outbox in the same transaction, so a restriction is announced once
per transition and proxies ignore events older than what they hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from goproxy_site.events import schemas
from goproxy_site.outbox import outbox_add
from plans.models import (
    OutboxEvent,
    RestrictionReason,
    Subscription,
    SubscriptionStatus,
    UserRestriction,
)

logger = logging.getLogger(__name__)

# The restriction that each non-active status of the current subscription implies.
STATUS_RESTRICTION = {
    SubscriptionStatus.LIMITED: RestrictionReason.LIMIT,
    SubscriptionStatus.EXPIRED: RestrictionReason.EXPIRED,
    SubscriptionStatus.DISABLED: RestrictionReason.DISABLED,
}


def _restriction_for_update(user_id: int) -> UserRestriction:
    row, _ = UserRestriction.objects.get_or_create(user_id=user_id)
    return UserRestriction.objects.select_for_update().get(pk=row.pk)


def _restriction_change(
    user_id: int,
    *,
    reason: str,
    throttle_bps: int | None,
    event: Callable[[int], schemas.Event],
    always: bool = False,
) -> int | None:
    """Set the user's state, bump its version and queue `event(version)` in the outbox.

    Unless `always`, an unchanged state changes nothing. Returns the new version, or
    None when nothing changed.
    """
    row = _restriction_for_update(user_id)
    if not always and row.reason == reason and row.throttle_bps == throttle_bps:
        return None
    row.reason = reason
    row.throttle_bps = throttle_bps
    row.version += 1
    row.save(update_fields=["reason", "throttle_bps", "version", "updated_at"])
    outbox_add(model=OutboxEvent, event=event(row.version))
    return row.version


def restriction_set(*, user_id: int, reason: str) -> bool:
    """Refuse a user for `reason`; publish only when the restriction changes."""
    cls = (
        schemas.UserExceededTrafficLimitEvent
        if reason == RestrictionReason.LIMIT
        else schemas.UserConsumedTrafficWithoutPlan
    )
    version = _restriction_change(
        user_id,
        reason=reason,
        throttle_bps=None,
        event=lambda v: cls(user_id=user_id, reason=reason, restriction_version=v),
    )
    if version is None:
        return False
    logger.info("user %s restricted: %s (v%s)", user_id, reason, version)
    return True


def restriction_lift(*, subscription: Subscription) -> None:
    """Lift any restriction and publish PlanAssignedEvent (assignment or renewal).

    Always published: the event also carries the new plan's limits to the proxies.
    """
    _restriction_change(
        subscription.user_id,
        reason="",
        throttle_bps=None,
        event=lambda v: schemas.PlanAssignedEvent(
            user_id=subscription.user_id,
            plan_id=subscription.plan_id,
            subscription_id=subscription.pk,
            restriction_version=v,
        ),
        always=True,
    )


def throttle_set(*, user_id: int, speed_bps: int) -> bool:
    """Hold a user to `speed_bps` instead of refusing them; publish on change."""
    version = _restriction_change(
        user_id,
        reason="",
        throttle_bps=speed_bps,
        event=lambda v: schemas.UserThrottledEvent(
            user_id=user_id, speed_bps=speed_bps, restriction_version=v
        ),
    )
    if version is None:
        return False
    logger.info("user %s throttled to %s B/s (v%s)", user_id, speed_bps, version)
    return True


def restriction_sync(*, subscription: Subscription) -> bool:
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
        return throttle_set(user_id=subscription.user_id, speed_bps=speed)
    reason = STATUS_RESTRICTION.get(status)
    if reason is not None:
        return restriction_set(user_id=subscription.user_id, reason=reason)
    current = UserRestriction.objects.filter(user_id=subscription.user_id).first()
    if current is not None and (current.is_restricted or current.throttle_bps is not None):
        restriction_lift(subscription=subscription)
    return False
