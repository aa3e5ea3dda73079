"""Small presentation helpers shared by admin, portal and API."""

from __future__ import annotations

UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


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
