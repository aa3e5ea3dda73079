"""CSV export of traffic per day, user and plan, for the operators' spreadsheets.

Rows come from the database in chunks; the users of each chunk are looked up in one
accounts-DB query (and remembered for the rest of the export), never one per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from itertools import islice

from django.utils import timezone

from accounts.selectors import UserSummary, users_by_id

from .selectors import usage_daily_by_user

EXPORT_CHUNK = 2000

USAGE_DAILY_HEADER = (
    "day",
    "user_id",
    "username",
    "email",
    "plan",
    "up_bytes",
    "down_bytes",
    "total_bytes",
)


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[midnight of `first`, midnight after `last`) in the current time zone."""
    zone = timezone.get_current_timezone()
    start = datetime.combine(first, time.min, tzinfo=zone)
    return start, datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone)


def usage_daily_rows(
    *, first: date, last: date, user_ids: Iterable[int] | None = None
) -> Iterator[tuple[object, ...]]:
    """Traffic per (day, user, plan) from `first` to `last`, both days included."""
    start, end = day_bounds(first, last)
    stream = usage_daily_by_user(start=start, end=end, user_ids=user_ids)
    known: dict[int, UserSummary | None] = {}
    while chunk := list(islice(stream, EXPORT_CHUNK)):
        new = {row["user_id"] for row in chunk} - known.keys()
        found = users_by_id(user_ids=new)
        known.update({user_id: found.get(user_id) for user_id in new})
        for row in chunk:
            user = known[row["user_id"]]
            day = row["day"].astimezone(timezone.get_current_timezone()).date()
            yield (
                day.isoformat(),
                row["user_id"],
                user.username if user else "",
                user.email if user else "",
                row["plan"],
                row["bytes_up"],
                row["bytes_down"],
                row["bytes_up"] + row["bytes_down"],
            )
