"""Read-only admin columns in people's units: byte counts in MB/GB, moments in local time.

class UsageResetAdmin(admin.ModelAdmin):
    list_display = ["period_end", "up"]
    period_end = time_column("period_end", "period end", sortable=True)
    up = bytes_column("bytes_up", "up", sortable=True)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .formatting import human_bytes, local_time, local_time_short

Column = Callable[[Any, Any], "SafeString | str"]


def when(moment: datetime | None) -> SafeString | str:
    """A moment in the local zone, short, with the full form (and zone) as a tooltip."""
    if not moment:
        return "—"
    return format_html('<time title="{}">{}</time>', local_time(moment), local_time_short(moment))


def bytes_column(field: str, description: str, *, sortable: bool = False) -> Column:
    """A read-only column of a byte count in human units (MB, GB)."""

    @admin.display(description=description, ordering=field if sortable else None)
    def column(model_admin: Any, obj: Any) -> str:
        return human_bytes(getattr(obj, field))

    return column


def time_column(field: str, description: str, *, sortable: bool = False) -> Column:
    """A read-only column of a moment in local time (see `when`)."""

    @admin.display(description=description, ordering=field if sortable else None)
    def column(model_admin: Any, obj: Any) -> SafeString | str:
        return when(getattr(obj, field))

    return column


def text_column(field: str, description: str, *, limit: int = 40) -> Column:
    """A read-only column of a long text (an error), cut to `limit` with the whole as a
    tooltip."""

    @admin.display(description=description)
    def column(model_admin: Any, obj: Any) -> SafeString | str:
        text = str(getattr(obj, field) or "")
        if len(text) <= limit:
            return text or "—"
        return format_html('<span title="{}">{}…</span>', text, text[: limit - 1])

    return column
