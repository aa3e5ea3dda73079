"""A subscription's history in words: sentences for the person whose plan it is, and
readable details for operators.

Users read what happened in a sentence, with times in the service's local time zone
(PLANS_TIME_ZONE, the one whose midnight resets plans), sizes in human units, and no
internal ids or operator names: an operator is "the operator". Operators see each
entry's message, which names who made the change, with its details in the same units.
"""

from __future__ import annotations

from django.utils.dateparse import parse_datetime

from goproxy_site.formatting import human_bytes, local_time

from .history import BY_USER
from .models import SubscriptionEvent, SubscriptionEventKind, hours_in_words

_BYTE_KEYS = frozenset({"bytes", "allowance", "used", "limit", "bytes_up", "bytes_down"})
_TIME_KEYS = frozenset(
    {"expires_at", "old_expires_at", "period_start", "next_reset_at", "deadline"}
)
_RENEWAL_CAUSES = {
    "expired": " when the previous plan expired",
    "quota reached": " when the previous plan ran out of traffic",
    "queued after the end": " at once, as the previous plan had ended",
}
_DISABLE_REASONS = {
    "user deactivated": "Your account was deactivated, which disabled the plan.",
    "account deleted": "The account was deleted, which disabled the plan.",
}


def _when(value: object) -> str:
    moment = parse_datetime(value) if isinstance(value, str) else None
    return local_time(moment) if moment else str(value)


def _size(value: object) -> str:
    return human_bytes(value) if isinstance(value, int) else str(value)


def _by(data: dict[str, object]) -> str:
    by = data.get("by")
    if not by:
        return ""
    return " by you" if by == BY_USER else " by the operator"


def event_sentence(event: SubscriptionEvent) -> str:
    """What the entry means to the user, as one sentence."""
    data: dict[str, object] = event.data or {}
    kind = event.kind
    plan = data.get("plan") or "new"
    by = _by(data)
    kinds = SubscriptionEventKind
    if kind == kinds.ASSIGNED:
        if data.get("by") == BY_USER:
            return f"You chose the {plan} plan."
        if data.get("by"):
            return f"The operator gave you the {plan} plan."
        return f"You got the {plan} plan."
    if kind == kinds.ON_HOLD:
        deadline = data.get("deadline")
        later = f"; it starts by itself on {_when(deadline)}" if deadline else ""
        return f"The plan waits for your first use of the proxy{later}."
    if kind == kinds.STARTED:
        expires = data.get("expires_at")
        until = f"; it runs until {_when(expires)}" if expires else "; it does not expire"
        return f"The plan started{until}."
    if kind == kinds.RESET:
        up, down = data.get("bytes_up"), data.get("bytes_down")
        used = human_bytes(
            (up if isinstance(up, int) else 0) + (down if isinstance(down, int) else 0)
        )
        if data.get("manual"):
            return f"The operator reset your traffic; the closed period used {used}."
        return f"Your traffic allowance started again; the closed period used {used}."
    if kind in (kinds.LIMITED, kinds.THROTTLED):
        limit = _size(data.get("limit"))
        if kind == kinds.THROTTLED:
            return f"You used the plan's {limit}; your speed is reduced until the next reset."
        return (
            f"You used the plan's {limit}; the proxy refuses new traffic until the next reset "
            "or a top-up."
        )
    if kind == kinds.LIFTED:
        if event.message == "topped up":
            return "Full access is back after the top-up."
        return "Full access is back."
    if kind == kinds.EXPIRED:
        return "The plan expired."
    if kind == kinds.DISABLED:
        reason = data.get("reason") or event.message
        return _DISABLE_REASONS.get(str(reason), "The operator disabled the plan.")
    if kind == kinds.ENABLED:
        return "The operator enabled the plan again."
    if kind == kinds.EXTENDED:
        days = data.get("days")
        expires = data.get("expires_at")
        until = f"; it now runs until {_when(expires)}" if expires else ""
        return f"The plan was extended by {days} day{'s' if days != 1 else ''}{by}{until}."
    if kind == kinds.TOPPED_UP:
        return (
            f"{_size(data.get('bytes'))} added to this period's traffic{by} "
            f"({_size(data.get('allowance'))} in all)."
        )
    if kind == kinds.SWITCHED:
        return f"Your plan changed from {data.get('old_plan')} to {plan}{by}."
    if kind == kinds.QUEUED:
        return f"The {plan} plan was queued as your next plan{by}."
    if kind == kinds.QUEUE_CANCELLED:
        return f"The queued {plan} plan was cancelled{by}."
    if kind == kinds.RENEWED:
        cause = _RENEWAL_CAUSES.get(str(data.get("reason")), "")
        return f"Your queued {plan} plan took over{cause}."
    if kind == kinds.REPLACED:
        return f"This plan was replaced by the {plan} plan{by}."
    if kind == kinds.NOTIFIED:
        threshold = data.get("threshold")
        if data.get("kind") == "quota":
            return f"Reminder sent: {threshold} % of the plan's traffic used."
        if isinstance(threshold, int):
            return f"Reminder sent: the plan ends in {hours_in_words(threshold)}."
    return f"{event.get_kind_display()}."


def event_details(event: SubscriptionEvent) -> str:
    """The entry's data for operators: sizes in human units, times local, ids kept."""
    parts = []
    for key, value in (event.data or {}).items():
        if value in (None, "") or key == "by":
            continue
        if key in _BYTE_KEYS:
            shown = _size(value)
        elif key in _TIME_KEYS:
            shown = _when(value)
        else:
            shown = str(value)
        parts.append(f"{key.replace('_', ' ')}: {shown}")
    return ", ".join(parts)
