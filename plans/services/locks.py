"""Row locks every subscription change starts with, so changes to one user serialise."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from plans.models import Subscription


def current_for_update(user_id: int) -> Subscription | None:
    """The user's current subscription, locked (None when there is none)."""
    return Subscription.objects.select_for_update().filter(user_id=user_id, is_current=True).first()


def current_locked(subscription: Subscription) -> Subscription:
    """A fresh, locked copy of `subscription`, which must still be the user's current one."""
    sub = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if not sub.is_current:
        raise ValidationError("Only a user's current subscription can be changed.")
    return sub


def current_due_for_update(
    statuses: Sequence[str], **deadline_lte: datetime
) -> QuerySet[Subscription]:
    """Current subscriptions in `statuses` whose deadline has passed, locked, with plans."""
    return (
        Subscription.objects.select_for_update()
        .select_related("plan")
        .filter(is_current=True, status__in=list(statuses), **deadline_lte)
    )
