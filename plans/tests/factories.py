"""Test data of the plans app: traffic deltas as the proxy reports them, and readers of
what the services wrote (outbox events, history, the current subscription)."""

from __future__ import annotations

from datetime import datetime

from goproxy_site.events import schemas
from goproxy_site.outbox import AbstractOutboxEvent
from plans.models import OutboxEvent, Subscription


def traffic_delta(
    user_id: int,
    up: int,
    down: int,
    seq: int,
    at: datetime | None = None,
    *,
    instance: str = "px-1",
) -> schemas.UserConsumedTrafficEvent:
    """One proxy report of a user's bytes (`at` defaults to now)."""
    if at is None:
        return schemas.UserConsumedTrafficEvent(
            user_id=user_id, bytes_up=up, bytes_down=down, instance_id=instance, seq=seq
        )
    return schemas.UserConsumedTrafficEvent(
        user_id=user_id, bytes_up=up, bytes_down=down, instance_id=instance, seq=seq, occurred_at=at
    )


def outbox_events(model: type[AbstractOutboxEvent] = OutboxEvent) -> list[schemas.Event]:
    """Every event in an outbox (the plans outbox by default), oldest first."""
    return [schemas.from_json(r.payload) for r in model._default_manager.order_by("id")]


def restriction_events() -> list[
    schemas.UserExceededTrafficLimitEvent | schemas.UserConsumedTrafficWithoutPlan
]:
    """Restriction events in the plans outbox, oldest first."""
    return [e for e in outbox_events() if isinstance(e, schemas.RESTRICTION_TYPES)]


def user_events(user_id: int) -> list[schemas.Event]:
    """Plans-outbox events about one user, oldest first."""
    return [e for e in outbox_events() if getattr(e, "user_id", None) == user_id]


def history_kinds(sub: Subscription) -> list[str]:
    """The kinds of a subscription's history entries, oldest first."""
    return list(sub.history.order_by("at", "id").values_list("kind", flat=True))


def current_subscription(user_id: int) -> Subscription:
    """The user's current subscription, fresh from the DB."""
    return Subscription.objects.select_related("plan").get(user_id=user_id, is_current=True)
