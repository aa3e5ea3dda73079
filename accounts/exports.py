"""CSV exports of users with their plan and usage, for the operators' spreadsheets.

Users stream in chunks of EXPORT_CHUNK; each chunk costs one accounts-DB query and two
plans-DB queries (current subscriptions, traffic windows), never one per user. Sizes
are plain byte counts, so a spreadsheet can sum and divide them; times are ISO 8601.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import islice

from django.db.models import QuerySet

from plans import selectors as plan_selectors

from .models import User

EXPORT_CHUNK = 500

USER_USAGE_HEADER = (
    "user_id",
    "username",
    "email",
    "active",
    "joined",
    "plan",
    "status",
    "period_used_bytes",
    "period_limit_bytes",
    "period_used_percent",
    "period_up_bytes",
    "period_down_bytes",
    "lifetime_bytes",
    "started",
    "expires",
    "today_bytes",
    "last_7_days_bytes",
    "last_30_days_bytes",
)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def user_usage_rows(users: QuerySet[User]) -> Iterator[tuple[object, ...]]:
    """One row per user of `users` (ordered by id) with their current subscription."""
    stream = users.order_by("pk").iterator(chunk_size=EXPORT_CHUNK)
    while chunk := list(islice(stream, EXPORT_CHUNK)):
        ids = [u.pk for u in chunk]
        subs = plan_selectors.subscriptions_current_by_user(user_ids=ids)
        windows = plan_selectors.usage_windows_by_user(user_ids=ids)
        for user in chunk:
            sub = subs.get(user.pk)
            window = windows.get(user.pk, {"today": 0, "week": 0, "month": 0})
            limit = sub.traffic_limit_bytes if sub else None
            used = sub.bytes_used if sub else None
            yield (
                user.pk,
                user.username,
                user.email,
                "yes" if user.is_active else "no",
                _iso(user.date_joined),
                sub.plan.name if sub else "",
                sub.status if sub else "no plan",
                used,
                limit,
                round(used * 100 / limit, 1) if used is not None and limit else None,
                sub.bytes_up if sub else None,
                sub.bytes_down if sub else None,
                sub.lifetime_bytes_used if sub else None,
                _iso(sub.started_at) if sub else "",
                _iso(sub.expires_at) if sub else "",
                window["today"],
                window["week"],
                window["month"],
            )
