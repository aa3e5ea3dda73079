"""Reset-cycle arithmetic: where the next period boundary falls (pure functions, no ORM).

Calendar cycles (daily, weekly on Mondays, monthly on the 1st) fall at local midnight in
PLANS_TIME_ZONE, so "monthly" means the operator's months, DST included. "Every N days"
counts whole N-day steps from the subscription's start.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

NONE = "none"
DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
EVERY_N_DAYS = "every_n_days"


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def next_boundary(
    *, cycle: str, every_days: int | None, anchor: datetime, after: datetime, tz: ZoneInfo
) -> datetime | None:
    """The first period boundary strictly after `after` (UTC), or None for no cycle."""
    if cycle == NONE:
        return None
    if cycle == EVERY_N_DAYS:
        if not every_days:
            raise ValueError("the every_n_days cycle needs every_days")
        step = timedelta(days=every_days)
        if after < anchor:
            return anchor + step
        steps = (after - anchor) // step + 1
        return (anchor + steps * step).astimezone(UTC)
    local = after.astimezone(tz).date()
    if cycle == DAILY:
        day = local + timedelta(days=1)
    elif cycle == WEEKLY:
        day = local + timedelta(days=7 - local.weekday())
    elif cycle == MONTHLY:
        day = date(local.year + local.month // 12, local.month % 12 + 1, 1)
    else:
        raise ValueError(f"unknown reset cycle {cycle!r}")
    boundary = _local_midnight(day, tz)
    # A DST jump can put "tomorrow's midnight" at or before `after` only in pathological
    # zones; step once more so the result is always later.
    if boundary <= after:
        return next_boundary(
            cycle=cycle, every_days=every_days, anchor=anchor, after=boundary, tz=tz
        )
    return boundary
