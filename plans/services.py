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

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB
from goproxy_site.events import schemas

from .models import (
    FreePlanClaim,
    OutboxEvent,
    Plan,
    RestrictionReason,
    Subscription,
    SubscriptionStatus,
    TrafficSequence,
    UnplannedUsage,
    UsageBucket,
    UserRestriction,
)

logger = logging.getLogger(__name__)

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
        if sub.expires_at is None:
            raise ValidationError("This subscription has no expiry to extend.")
        sub.expires_at = max(sub.expires_at, now) + timedelta(days=days)
        if sub.status == SubscriptionStatus.EXPIRED:
            sub.status = (
                SubscriptionStatus.LIMITED if sub.is_exhausted else SubscriptionStatus.ACTIVE
            )
        sub.save(update_fields=["expires_at", "status", "updated_at"])
        _restriction_sync(subscription=sub)
    return sub


def subscription_reset_usage(*, subscription: Subscription) -> Subscription:
    """Zero a subscription's usage counters; a limited subscription becomes active."""
    with transaction.atomic(using=PLANS_DB):
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        sub.bytes_up = sub.bytes_down = 0
        if sub.status == SubscriptionStatus.LIMITED:
            sub.status = SubscriptionStatus.ACTIVE
        sub.save(update_fields=["bytes_up", "bytes_down", "status", "updated_at"])
        _restriction_sync(subscription=sub)
    return sub


def subscription_disable(*, subscription: Subscription, reason: str = "") -> Subscription:
    """Disable a subscription (operator action); the user is refused by the proxy."""
    with transaction.atomic(using=PLANS_DB):
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        sub.status = SubscriptionStatus.DISABLED
        sub.save(update_fields=["status", "updated_at"])
        _restriction_sync(subscription=sub)
    return sub


def subscription_disable_current(*, user_id: int, reason: str = "") -> Subscription | None:
    with transaction.atomic(using=PLANS_DB):
        current = _current_for_update(user_id)
        if current is None:
            return None
        return subscription_disable(subscription=current, reason=reason)


def plan_claim_free_self_service(*, user_id: int, plan: Plan) -> Subscription:
    """A user claims a free plan from the portal.

    On top of `plan_claim_free` (free plans only, once per user) it refuses while the user
    has a current subscription that is not expired, so a claim never replaces a running
    paid plan nor lifts an operator's "disabled". The check and the claim run under the
    lock of the current subscription row.
    """
    if not plan.is_public:
        raise ValidationError({"plan": "This plan is not offered in the portal."})
    with transaction.atomic(using=PLANS_DB):
        current = _current_for_update(user_id)
        if current is not None and current.status != SubscriptionStatus.EXPIRED:
            raise ValidationError(
                "You already have a plan; the free plan can be claimed when it has expired."
            )
        return plan_claim_free(user_id=user_id, plan=plan)


# ---------------------------------------------------------------------------------------
# Traffic pipeline: restrictions, outbox, applying traffic deltas, expiry.
# ---------------------------------------------------------------------------------------

# The restriction that each non-active status of the current subscription implies.
STATUS_RESTRICTION = {
    SubscriptionStatus.LIMITED: RestrictionReason.LIMIT,
    SubscriptionStatus.EXPIRED: RestrictionReason.EXPIRED,
    SubscriptionStatus.DISABLED: RestrictionReason.DISABLED,
    SubscriptionStatus.ON_HOLD: RestrictionReason.NO_PLAN,
}


def outbox_add(*, event: schemas.Event) -> OutboxEvent:
    """Queue an event for Kafka in the caller's plans-DB transaction."""
    return OutboxEvent.objects.create(
        event_id=event.event_id,
        topic=schemas.topic_for(event),
        key=event.key,
        payload=event.to_json().decode(),
    )


def outbox_mark_sent(*, model: type[OutboxEvent], using: str, ids: Sequence[int]) -> int:
    """Mark outbox rows (plans or accounts outbox) as delivered to Kafka."""
    if not ids:
        return 0
    with transaction.atomic(using=using):
        return (
            model.objects.using(using)
            .filter(pk__in=list(ids), sent_at__isnull=True)
            .update(sent_at=timezone.now())
        )


def _restriction_for_update(user_id: int) -> UserRestriction:
    row, _ = UserRestriction.objects.get_or_create(user_id=user_id)
    return UserRestriction.objects.select_for_update().get(pk=row.pk)


def _restriction_set(*, user_id: int, reason: str) -> bool:
    """Restrict a user for `reason`; publish only when the restriction changes."""
    row = _restriction_for_update(user_id)
    if row.reason == reason:
        return False
    row.reason = reason
    row.version += 1
    row.save(update_fields=["reason", "version", "updated_at"])
    cls = (
        schemas.UserExceededTrafficLimitEvent
        if reason == RestrictionReason.LIMIT
        else schemas.UserConsumedTrafficWithoutPlan
    )
    outbox_add(event=cls(user_id=user_id, reason=reason, restriction_version=row.version))
    logger.info("user %s restricted: %s (v%s)", user_id, reason, row.version)
    return True


def _restriction_lift(*, subscription: Subscription) -> None:
    """Lift any restriction and publish PlanAssignedEvent (assignment or renewal)."""
    row = _restriction_for_update(subscription.user_id)
    row.reason = ""
    row.version += 1
    row.save(update_fields=["reason", "version", "updated_at"])
    outbox_add(
        event=schemas.PlanAssignedEvent(
            user_id=subscription.user_id,
            plan_id=subscription.plan_id,
            subscription_id=subscription.pk,
            restriction_version=row.version,
        )
    )


def _restriction_sync(*, subscription: Subscription) -> None:
    """Make the user's restriction match their current subscription's status."""
    if not subscription.is_current:
        return
    reason = STATUS_RESTRICTION.get(SubscriptionStatus(subscription.status))
    if reason is not None:
        _restriction_set(user_id=subscription.user_id, reason=reason)
        return
    current = UserRestriction.objects.filter(user_id=subscription.user_id).first()
    if current is not None and current.is_restricted:
        _restriction_lift(subscription=subscription)


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


def _traffic_apply_user(
    user_id: int, hours: dict[datetime, list[int]], now: datetime
) -> str | None:
    """Add one user's bytes; return the restriction reason if one was newly set."""
    up = sum(v[0] for v in hours.values())
    down = sum(v[1] for v in hours.values())
    sub = _current_for_update(user_id)
    if sub is None:
        _add_hourly(UnplannedUsage, {"user_id": user_id}, hours)
        changed = _restriction_set(user_id=user_id, reason=RestrictionReason.NO_PLAN)
        return RestrictionReason.NO_PLAN if changed else None
    sub.bytes_up += up
    sub.bytes_down += down
    _add_hourly(UsageBucket, {"user_id": user_id, "subscription": sub}, hours)
    live = (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED)
    if sub.status in live and sub.expires_at is not None and sub.expires_at <= now:
        sub.status = SubscriptionStatus.EXPIRED
    elif sub.status == SubscriptionStatus.ACTIVE and sub.is_exhausted:
        sub.status = SubscriptionStatus.LIMITED
    sub.save(update_fields=["bytes_up", "bytes_down", "status", "updated_at"])
    reason = STATUS_RESTRICTION.get(SubscriptionStatus(sub.status))
    if reason is not None and _restriction_set(user_id=user_id, reason=reason):
        return reason
    return None


def traffic_apply_batch(
    *, deltas: Sequence[schemas.UserConsumedTrafficEvent], now: datetime | None = None
) -> TrafficBatchResult:
    """Apply proxy traffic deltas exactly once, in one plans-DB transaction.

    Each delta adds its bytes to the user's current subscription and its hourly
    UsageBucket (or to UnplannedUsage when there is none). Per (proxy instance, user)
    the highest applied `seq` is stored with the bytes, so a redelivered delta is
    skipped. Crossing the limit, expiry or having no plan restricts the user once
    per transition and queues the restriction event in the outbox.
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
        per_user: dict[int, dict[datetime, list[int]]] = defaultdict(dict)
        skipped = 0
        for d in sorted(deltas, key=lambda d: (d.instance_id, d.user_id, d.seq)):
            key = (d.instance_id, d.user_id)
            if d.seq <= new_marks.get(key, marks.get(key, 0)):
                skipped += 1
                continue
            new_marks[key] = d.seq
            bucket = per_user[d.user_id].setdefault(_hour(d.occurred_at), [0, 0])
            bucket[0] += d.bytes_up
            bucket[1] += d.bytes_down
        restricted = [
            user_id
            for user_id, hours in sorted(per_user.items())
            if _traffic_apply_user(user_id, hours, now) is not None
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
    """Expire current subscriptions past `expires_at` and restrict their users."""
    now = now or timezone.now()
    expired: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        due = Subscription.objects.select_for_update().filter(
            is_current=True,
            status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED],
            expires_at__lte=now,
        )
        for sub in due:
            sub.status = SubscriptionStatus.EXPIRED
            sub.save(update_fields=["status", "updated_at"])
            _restriction_sync(subscription=sub)
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
class PlanInUse(Exception):
    """The plan has subscriptions or free-plan claims and cannot be deleted."""


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


def plan_claim_free_once(*, user_id: int, plan: Plan) -> Subscription:
    """A user claims a free plan (API): once ever, and never over a running subscription.

    A second claim raises FreePlanAlreadyClaimed whatever the current state; a current
    subscription that is not expired (a paid plan, or one an operator disabled) is not
    replaced.
    """
    if FreePlanClaim.objects.filter(user_id=user_id).exists():
        raise FreePlanAlreadyClaimed("This user has already claimed a free plan.")
    if not plan.is_free:
        raise ValidationError({"plan": "Only a plan marked free can be claimed."})
    with transaction.atomic(using=PLANS_DB):
        current = _current_for_update(user_id)
        if current is not None and current.status != SubscriptionStatus.EXPIRED:
            raise ValidationError(
                "The user already has a current subscription; a free plan can be claimed "
                "when there is none or it has expired.",
                code="has_plan",
            )
        return plan_claim_free(user_id=user_id, plan=plan)
