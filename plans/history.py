"""A subscription's history: one SubscriptionEvent per change, in the changer's transaction.

Services and notifications both write it, so it sits below them (models only).
"""

from __future__ import annotations

from datetime import datetime

from .models import Subscription, SubscriptionEvent

HistoryValue = str | int | None

# The `by` of changes users make themselves (portal, the `me/` API); every other change an
# operator makes names them (`operator_by`), and a change with no `by` was automatic.
BY_USER = "by the user"


def operator_by(name: str, *, via: str = "") -> str:
    """How history names an operator: "by op", "by op via the API"."""
    return f"by {name}" + (f" via {via}" if via else "")


def history_add(
    sub: Subscription, kind: str, at: datetime, message: str = "", /, **data: HistoryValue
) -> SubscriptionEvent:
    """Append one entry to the subscription's history (in the caller's transaction).

    `data` (JSON) holds the details; any key is allowed, `kind` included.
    """
    return SubscriptionEvent.objects.create(
        subscription=sub, user_id=sub.user_id, kind=kind, at=at, message=message[:300], data=data
    )


def iso(moment: datetime | None) -> str | None:
    """A moment as history data (JSON): ISO 8601, or None."""
    return moment.isoformat() if moment is not None else None
