"""Writes on the plans DB: assigning plans and changing subscriptions.

Every service runs in `transaction.atomic(using=PLANS_DB)` and locks the user's current
subscription row, so concurrent changes to one user serialise in the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB

from .models import FreePlanClaim, Plan, Subscription, SubscriptionStatus

LIVE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED, SubscriptionStatus.ON_HOLD)


class FreePlanAlreadyClaimed(Exception):
    """The user has claimed a free plan before."""


def _current_for_update(user_id: int) -> Subscription | None:
    return Subscription.objects.select_for_update().filter(user_id=user_id, is_current=True).first()


def plan_assign(*, user_id: int, plan: Plan, now: datetime | None = None) -> Subscription:
    """Make `plan` the user's current subscription, replacing any current one atomically.

    Usage starts at zero; the previous subscription keeps its totals as history.
    """
    now = now or timezone.now()
    with transaction.atomic(using=PLANS_DB):
        previous = _current_for_update(user_id)
        if previous is not None:
            previous.is_current = False
            previous.save(update_fields=["is_current", "updated_at"])
        subscription = Subscription(
            user_id=user_id,
            plan=plan,
            status=SubscriptionStatus.ACTIVE,
            is_current=True,
            started_at=now,
            expires_at=now + timedelta(days=plan.duration_days) if plan.duration_days else None,
            traffic_limit_bytes=plan.traffic_limit_bytes,
        )
        subscription.full_clean(validate_constraints=False)
        subscription.save()
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
        if sub.expires_at is None:
            raise ValidationError("This subscription has no expiry to extend.")
        sub.expires_at = max(sub.expires_at, now) + timedelta(days=days)
        if sub.status == SubscriptionStatus.EXPIRED:
            sub.status = (
                SubscriptionStatus.LIMITED if sub.is_exhausted else SubscriptionStatus.ACTIVE
            )
        sub.save(update_fields=["expires_at", "status", "updated_at"])
    return sub


def subscription_reset_usage(*, subscription: Subscription) -> Subscription:
    """Zero a subscription's usage counters; a limited subscription becomes active."""
    with transaction.atomic(using=PLANS_DB):
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        sub.bytes_up = sub.bytes_down = 0
        if sub.status == SubscriptionStatus.LIMITED:
            sub.status = SubscriptionStatus.ACTIVE
        sub.save(update_fields=["bytes_up", "bytes_down", "status", "updated_at"])
    return sub


def subscription_disable(*, subscription: Subscription, reason: str = "") -> Subscription:
    """Disable a subscription (operator action); the user is refused by the proxy."""
    with transaction.atomic(using=PLANS_DB):
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        sub.status = SubscriptionStatus.DISABLED
        sub.save(update_fields=["status", "updated_at"])
    return sub


def subscription_disable_current(*, user_id: int, reason: str = "") -> Subscription | None:
    with transaction.atomic(using=PLANS_DB):
        current = _current_for_update(user_id)
        if current is None:
            return None
        return subscription_disable(subscription=current, reason=reason)
