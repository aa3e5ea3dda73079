"""Small presentation helpers shared by admin, portal and API.

Sizes are decimal (1 MB = 1,000,000 bytes), as plan limits are sold; speeds are stored
in bytes per second and shown as bit rates (how links are sold) with bytes per second
beside them. Moments are shown in the service's local time zone, PLANS_TIME_ZONE (the
one whose midnight resets plans), named.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings

UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
BIT_RATE_UNITS = ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s")

# Units operators enter sizes and speeds in (admin forms): label and bytes, largest first.
BYTE_INPUT_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3), ("B", 1))
SPEED_INPUT_UNITS = (
    ("Gbit/s", 125_000_000),
    ("MB/s", 10**6),
    ("Mbit/s", 125_000),
    ("kB/s", 10**3),
    ("B/s", 1),
)


def human_bytes(n: int | None) -> str:
    """Decimal units (1 MB = 1,000,000 bytes), as plan limits are sold."""
    if n is None:
        return "unlimited"
    value = float(n)
    for unit in UNITS:
        if abs(value) < 1000 or unit == UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _short(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def human_bit_rate(bytes_per_second: int | None) -> str:
    """A speed stored in bytes/s as a decimal bit rate: 1,250,000 -> "10 Mbit/s"."""
    if bytes_per_second is None:
        return "unlimited"
    value = float(bytes_per_second) * 8
    for unit in BIT_RATE_UNITS:
        if abs(value) < 1000 or unit == BIT_RATE_UNITS[-1]:
            return f"{_short(value)} {unit}"
        value /= 1000
    return f"{bytes_per_second * 8} bit/s"


def human_speed(bytes_per_second: int | None) -> str:
    """A speed with both readings: 1,250,000 -> "10 Mbit/s (1.2 MB/s)"."""
    if bytes_per_second is None:
        return "unlimited"
    return f"{human_bit_rate(bytes_per_second)} ({human_bytes(bytes_per_second)}/s)"


# The attribute under which an admin page leaves a row's user label (the e-mail, fetched
# for the whole page in one accounts-DB query), so str() of plans rows names the person.
USER_LABEL_ATTR = "_user_label"


def user_label(row: object) -> str:
    """The user of a plans row (it holds `user_id` only): the e-mail when a page has
    looked it up, else "user <id>"."""
    label = vars(row).get(USER_LABEL_ATTR)
    return label if label else f"user {getattr(row, 'user_id', '?')}"


def local_zone() -> ZoneInfo:
    return ZoneInfo(settings.PLANS_TIME_ZONE)


def local_time(moment: datetime) -> str:
    """ "15 Jan 2026, 11:00 CET": a moment in the local zone, named."""
    local = moment.astimezone(local_zone())
    return f"{local.day} {local:%b %Y, %H:%M} {local.tzname()}"


def local_time_short(moment: datetime) -> str:
    """ "2026-01-15 11:00": the same moment in the local zone, for narrow columns."""
    return f"{moment.astimezone(local_zone()):%Y-%m-%d %H:%M}"
