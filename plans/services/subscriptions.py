"""Changes to a user's subscription: assign, claim the free plan, extend, reset, disable,
enable, top up, switch plans, queue the next plan.

Every service runs in `transaction.atomic(using=PLANS_DB)` and locks the user's current
subscription row, so concurrent changes to one user serialise in the database, and ends
by making the proxies' view match (restrictions.restriction_sync / restriction_lift).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB
from goproxy_site.errors import ConflictError
from plans.claim_keys import email_claim_hash
from plans.history import history_add, iso
from plans.models import (
    FreePlanClaim,
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEventKind,
    SubscriptionStatus,
)
from plans.selectors import free_plan_claimed, free_plan_claimed_by_email

from .lifecycle import (
    next_reset,
    period_close,
    periods_roll,
    renew_from_queue,
    settle,
    subscription_new,
)
from .locks import current_for_update, current_locked
from .restrictions import restriction_lift, restriction_sync
from .tokens import subscription_token_get_or_create


class FreePlanAlreadyClaimed(ConflictError):
    """The user, or someone with the same e-mail address, has claimed a free plan before."""

    code = "already_claimed"


CLAIMED_BY_USER = "You have already claimed the free plan once."
CLAIMED_BY_EMAIL = (
    "The free plan was already claimed with this e-mail address (or another form of "
    "it); it is once per person."
)


def plan_assign(
    *, user_id: int, plan: Plan, now: datetime | None = None, by: str = ""
) -> Subscription:
    """Make `plan` the user's current subscription, replacing any current one atomically.

    Usage starts at zero; the previous subscription keeps its totals as history. A plan
    that starts on first use is put on hold (the proxy admits the user; the first traffic
    starts the clock, or the plan's deadline does). The user's first plan also creates
    their subscription-URL token, so pages that show it only read.
    """
    now = now or timezone.now()
    with transaction.atomic(using=PLANS_DB):
        previous = current_for_update(user_id)
        if previous is not None:
            previous.is_current = False
            previous.current_until = now
            previous.save(update_fields=["is_current", "current_until", "updated_at"])
            history_add(
                previous,
                SubscriptionEventKind.REPLACED,
                now,
                f"replaced by {plan.name} {by}".strip(),
                plan=plan.name,
                by=by or None,
            )
        subscription = subscription_new(
            user_id=user_id,
            plan=plan,
            now=now,
            on_hold=plan.start_on_first_use,
            message=f"assigned {by}".strip(),
            by=by,
        )
        restriction_lift(subscription=subscription)
        subscription_token_get_or_create(user_id=user_id)
    return subscription


def plan_claim_free(
    *, user_id: int, email: str, plan: Plan, public_only: bool = False
) -> Subscription:
    """A user claims a free plan (portal and API): once per person, never over a running plan.

    Once per person means once per account and once per e-mail address: the claim row
    keeps the keyed hash of the normalised address (plans.claim_keys), which outlives the
    account, so the same mailbox signing up again cannot claim again. A second claim
    raises FreePlanAlreadyClaimed whatever the current state (unique user_id and
    email_hash also stop two concurrent claims). A current subscription that is not
    expired (a paid plan, or one an operator disabled) is never replaced; the check and
    the claim run under the lock of the current subscription row. Only a plan marked
    free can be claimed; `public_only` also refuses plans not offered in the catalogue
    (the portal). Whether the address is verified is the caller's check
    (accounts.guards.require_verified_email).
    """
    email_hash = email_claim_hash(email)
    if free_plan_claimed(user_id=user_id):
        raise FreePlanAlreadyClaimed(CLAIMED_BY_USER)
    if free_plan_claimed_by_email(email=email):
        raise FreePlanAlreadyClaimed(CLAIMED_BY_EMAIL)
    if public_only and not plan.is_public:
        raise ValidationError({"plan": "This plan is not offered in the portal."})
    with transaction.atomic(using=PLANS_DB):
        current = current_for_update(user_id)
        if current is not None and current.status != SubscriptionStatus.EXPIRED:
            raise ValidationError(
                "You already have a plan; a free plan can be claimed when there is none "
                "or it has expired.",
                code="has_plan",
            )
        if not plan.is_free:
            raise ValidationError({"plan": "Only a plan marked free can be claimed."})
        try:
            with transaction.atomic(using=PLANS_DB):
                FreePlanClaim.objects.create(user_id=user_id, email_hash=email_hash, plan=plan)
                return plan_assign(user_id=user_id, plan=plan)
        except IntegrityError as exc:
            # A concurrent claim by this account or with this address won the race.
            raise FreePlanAlreadyClaimed(
                CLAIMED_BY_USER if free_plan_claimed(user_id=user_id) else CLAIMED_BY_EMAIL
            ) from exc


def subscription_extend(*, subscription: Subscription, days: int, by: str = "") -> Subscription:
    """Add days to a subscription; an expired one is extended from now and reactivated.

    `by` names who did it in the history ("by alice@example.org"), as in every service
    an operator can call."""
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
                sub.next_reset_at = next_reset(sub, now)
        sub.save(update_fields=["expires_at", "status", "next_reset_at", "updated_at"])
        history_add(
            sub,
            SubscriptionEventKind.EXTENDED,
            now,
            f"+{days} day(s) {by}".strip(),
            days=days,
            old_expires_at=iso(old),
            expires_at=iso(sub.expires_at),
            by=by or None,
        )
        restriction_sync(subscription=sub)
    return sub


def subscription_reset_usage(*, subscription: Subscription, by: str = "") -> Subscription:
    """Close the current period now (operator reset): usage goes to a reset record and
    back to zero, lifetime totals stay, a limited subscription becomes active. The plan's
    reset cycle keeps its own boundaries."""
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = (
            Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
        )
        period_close(sub, now, manual=True, by=by)
        sub.save()
        restriction_sync(subscription=sub)
    return sub


def subscription_disable(
    *, subscription: Subscription, reason: str = "", by: str = ""
) -> Subscription:
    """Disable a subscription (operator action); the user is refused by the proxy.

    `reason` says why ("user deactivated"), `by` who ("by op")."""
    with transaction.atomic(using=PLANS_DB):
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        before = sub.status
        sub.status = SubscriptionStatus.DISABLED
        sub.save(update_fields=["status", "updated_at"])
        if before != SubscriptionStatus.DISABLED:
            history_add(
                sub,
                SubscriptionEventKind.DISABLED,
                timezone.now(),
                f"{reason} {by}".strip(),
                previous=before,
                reason=reason or None,
                by=by or None,
            )
        restriction_sync(subscription=sub)
    return sub


def subscription_disable_current(
    *, user_id: int, reason: str = "", by: str = ""
) -> Subscription | None:
    """Disable the user's current subscription, if any (deactivation, account deletion)."""
    with transaction.atomic(using=PLANS_DB):
        current = current_for_update(user_id)
        if current is None:
            return None
        return subscription_disable(subscription=current, reason=reason, by=by)


def subscription_enable(*, subscription: Subscription, by: str = "") -> Subscription:
    """Undo an operator's disable: the status follows from the dates and usage again."""
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = current_locked(subscription)
        if sub.status != SubscriptionStatus.DISABLED:
            raise ValidationError("This subscription is not disabled.")
        if sub.started_at is None:
            sub.status = SubscriptionStatus.ON_HOLD
        else:
            sub.status = SubscriptionStatus.ACTIVE
        history_add(sub, SubscriptionEventKind.ENABLED, now, by, by=by or None)
        periods_roll(sub, now)
        current = settle(sub, now)
        current.save()
        restriction_sync(subscription=current)
    return current


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
        sub = current_locked(subscription)
        if sub.traffic_limit_bytes is None:
            raise ValidationError("This subscription has unlimited traffic; nothing to top up.")
        sub.traffic_limit_bytes += bytes_
        sub.topup_bytes += bytes_
        lifted = sub.status == SubscriptionStatus.LIMITED and not sub.is_exhausted
        if lifted:
            sub.status = SubscriptionStatus.ACTIVE
        sub.save()
        history_add(
            sub,
            SubscriptionEventKind.TOPPED_UP,
            now,
            by,
            bytes=bytes_,
            allowance=sub.traffic_limit_bytes,
            by=by or None,
        )
        if lifted:
            history_add(sub, SubscriptionEventKind.LIFTED, now, "topped up")
        restriction_sync(subscription=sub)
    return sub


def subscription_switch(*, subscription: Subscription, plan: Plan, by: str = "") -> Subscription:
    """Move the current subscription to another plan, keeping its usage and start date.

    The new plan's limit (plus this period's top-ups), speed, device limit, quota action
    and reset cycle apply from now; the expiry is recomputed from the original start with
    the new duration (it may already have passed: then the subscription expires now).
    """
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        sub = current_locked(subscription)
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
            sub.next_reset_at = next_reset(sub, now)
        if sub.status == SubscriptionStatus.LIMITED and not sub.is_exhausted:
            sub.status = SubscriptionStatus.ACTIVE
        history_add(
            sub,
            SubscriptionEventKind.SWITCHED,
            now,
            f"{old_plan.name} -> {plan.name} {by}".strip(),
            old_plan=old_plan.name,
            plan=plan.name,
            expires_at=iso(sub.expires_at),
            by=by or None,
        )
        if sub.status == SubscriptionStatus.EXPIRED and (
            sub.expires_at is None or sub.expires_at > now
        ):
            sub.status = SubscriptionStatus.ACTIVE
        current = settle(sub, now)
        current.save()
        # The new plan's limits (speed, connections, devices) reach the proxies.
        restriction_lift(subscription=current)
        restriction_sync(subscription=current)
    return current


def plan_queue(*, user_id: int, plan: Plan, by: str = "") -> QueuedPlan | Subscription:
    """Queue `plan` to follow the user's current subscription (one queued plan per user;
    queuing again replaces it).

    With no current subscription, or one already expired or cut off at its quota, the
    plan takes over at once and the new Subscription is returned.
    """
    now = timezone.now()
    with transaction.atomic(using=PLANS_DB):
        current = current_for_update(user_id)
        QueuedPlan.objects.filter(user_id=user_id).delete()
        queued = QueuedPlan.objects.create(user_id=user_id, plan=plan, queued_by=by[:100])
        if current is None:
            queued.delete()
            return plan_assign(user_id=user_id, plan=plan, now=now, by=by)
        current = Subscription.objects.select_related("plan").get(pk=current.pk)
        history_add(current, SubscriptionEventKind.QUEUED, now, by, plan=plan.name, by=by or None)
        ended = current.status == SubscriptionStatus.EXPIRED or (
            current.status == SubscriptionStatus.LIMITED and not current.plan.throttles
        )
        if ended:
            renewed = renew_from_queue(current, now, "queued after the end")
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
            history_add(
                current,
                SubscriptionEventKind.QUEUE_CANCELLED,
                timezone.now(),
                by,
                plan=queued.plan.name,
                by=by or None,
            )
        queued.delete()
    return True
