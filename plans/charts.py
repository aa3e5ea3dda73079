"""Usage bars and daily usage charts as inline HTML/SVG, rendered in Python.

Nothing here fetches anything or needs JavaScript: the portal and the admin embed the
markup directly. Every chart carries a text alternative (`<title>` + `<desc>`) and a
tooltip per day; templates add a data table for screen readers and copy/paste.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from goproxy_site.formatting import human_bytes

from .models import Subscription
from .selectors import UsagePoint

# Colours keep at least 4.5:1 contrast against white (WCAG AA for text and graphics).
UP_COLOUR = "#2563eb"
DOWN_COLOUR = "#c2410c"
OK_COLOUR = "#15803d"
WARN_COLOUR = "#b45309"
FULL_COLOUR = "#b91c1c"
GRID_COLOUR = "#e5e7eb"
TEXT_COLOUR = "#374151"
WARN_RATIO = 0.8


def nice_ticks(max_value: int, *, count: int = 4) -> list[int]:
    """Round axis ticks from 0 to at least `max_value`, with steps of 1, 2 or 5 x 10^k."""
    if max_value <= 0:
        return [0]
    raw_step = max_value / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    step = max(int(step), 1)
    top = math.ceil(max_value / step) * step
    return list(range(0, top + 1, step))


def usage_percent(used: int, limit: int | None) -> int | None:
    """Used share of the limit in whole percent (may exceed 100), None when unlimited."""
    if not limit:
        return None
    return math.floor(used * 100 / limit)


def subscription_usage_bar(sub: Subscription | None) -> str:
    """The used/limit bar of a subscription, or a dash without one (admin columns)."""
    if sub is None:
        return "—"
    return usage_bar_html(used=sub.bytes_used, limit=sub.traffic_limit_bytes)


def usage_bar_html(*, used: int, limit: int | None, label: str = "Traffic used") -> SafeString:
    """A used/limit bar with the numbers in human units; a plain line when unlimited.

    Styles are inline so the same markup works in the portal and in the admin.
    """
    used_text = human_bytes(used)
    percent = usage_percent(used, limit)
    if percent is None:
        return format_html(
            '<div class="usage"><span class="usage__text">{} used of unlimited</span></div>',
            used_text,
        )
    fill = min(percent, 100)
    colour = (
        FULL_COLOUR if percent >= 100 else WARN_COLOUR if percent >= WARN_RATIO * 100 else OK_COLOUR
    )
    return format_html(
        '<div class="usage">'
        '<div class="usage__bar" role="progressbar" aria-label="{}" aria-valuemin="0" '
        'aria-valuemax="100" aria-valuenow="{}" aria-valuetext="{} of {} ({} %)" '
        'style="background:#e5e7eb;border-radius:999px;height:10px;min-width:120px;'
        'overflow:hidden">'
        '<div class="usage__fill" style="width:{}%;background:{};height:100%"></div>'
        "</div>"
        '<span class="usage__text" style="white-space:nowrap">{} of {} ({} %)</span>'
        "</div>",
        label,
        fill,
        used_text,
        human_bytes(limit),
        percent,
        fill,
        colour,
        used_text,
        human_bytes(limit),
        percent,
    )


def _day_label(period: datetime) -> str:
    return f"{period.day} {period:%b}"


def daily_usage_svg(
    points: Sequence[UsagePoint],
    *,
    chart_id: str = "usage-chart",
    title: str = "Daily traffic",
    width: int = 720,
    height: int = 260,
) -> SafeString:
    """Grouped bars (up, down) per day, scaled to the busiest direction of any day.

    The SVG scales to its container (viewBox, width 100 %), so it stays readable on
    phones; each day has a tooltip with the exact numbers.
    """
    left, right, top, bottom = 70, 12, 34, 28
    plot_w = width - left - right
    plot_h = height - top - bottom
    n = max(len(points), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.38, 1.0)
    peak = max((max(p["bytes_up"], p["bytes_down"]) for p in points), default=0)
    ticks = nice_ticks(peak)
    scale_top = ticks[-1] or 1
    total_up = sum(p["bytes_up"] for p in points)
    total_down = sum(p["bytes_down"] for p in points)

    def y(value: int) -> float:
        return top + plot_h - value * plot_h / scale_top

    if points and (total_up or total_down):
        busiest = max(points, key=lambda p: p["bytes_up"] + p["bytes_down"])
        desc = (
            f"Last {len(points)} days: {human_bytes(total_up)} up, "
            f"{human_bytes(total_down)} down. Busiest day {_day_label(busiest['period'])} "
            f"with {human_bytes(busiest['bytes_up'] + busiest['bytes_down'])}."
        )
    else:
        desc = f"No traffic in the last {len(points)} days."

    parts: list[str] = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" '
        f'font-size="11" style="max-width:100%;height:auto">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
    ]
    # Legend.
    parts.append(
        f'<g fill="{TEXT_COLOUR}">'
        f'<rect x="{left}" y="8" width="12" height="12" fill="{UP_COLOUR}"/>'
        f'<text x="{left + 18}" y="18">Up (sent)</text>'
        f'<rect x="{left + 100}" y="8" width="12" height="12" fill="{DOWN_COLOUR}"/>'
        f'<text x="{left + 118}" y="18">Down (received)</text>'
        "</g>"
    )
    # Grid lines and y labels.
    for tick in ticks:
        ty = y(tick)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" '
            f'stroke="{GRID_COLOUR}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="{TEXT_COLOUR}">'
            f"{escape(human_bytes(tick))}</text>"
        )
    label_every = max(math.ceil(n / 7), 1)
    for i, point in enumerate(points):
        x0 = left + i * slot
        up, down = point["bytes_up"], point["bytes_down"]
        tip = f"{point['period']:%Y-%m-%d}: up {human_bytes(up)}, down {human_bytes(down)}"
        parts.append(f"<g><title>{escape(tip)}</title>")
        parts.append(
            f'<rect x="{x0:.1f}" y="{top}" width="{slot:.1f}" height="{plot_h}" '
            f'fill="transparent"/>'
        )
        bx = x0 + (slot - 2 * bar_w) / 2
        for value, colour, offset, direction in (
            (up, UP_COLOUR, 0.0, "up"),
            (down, DOWN_COLOUR, bar_w, "down"),
        ):
            if value > 0:
                h = max(value * plot_h / scale_top, 1.0)
                parts.append(
                    f'<rect class="bar bar--{direction}" x="{bx + offset:.1f}" '
                    f'y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                    f'fill="{colour}" data-bytes="{value}"/>'
                )
        parts.append("</g>")
        if (n - 1 - i) % label_every == 0:  # anchored on the last day (today)
            parts.append(
                f'<text x="{x0 + slot / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                f'fill="{TEXT_COLOUR}">{escape(_day_label(point["period"]))}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{TEXT_COLOUR}" stroke-width="1"/>'
    )
    if not (total_up or total_down):
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            f'text-anchor="middle" fill="{TEXT_COLOUR}" font-size="13">'
            f"{escape(desc)}</text>"
        )
    parts.append("</svg>")
    # Every interpolated value above is a number or passed through escape().
    return mark_safe("".join(parts))  # noqa: S308


def ranked_bars_svg(
    rows: Sequence[tuple[str, int]],
    *,
    chart_id: str,
    title: str,
    width: int = 720,
    bar_height: int = 18,
) -> SafeString:
    """Horizontal bars, largest first, one per (label, bytes): top users, plans.

    Labels are cut to fit and kept whole in each bar's tooltip; the values are drawn in
    human units beside the bars.
    """
    left, right, top = 250, 80, 8
    gap = 6
    height = top * 2 + max(len(rows), 1) * (bar_height + gap)
    plot_w = width - left - right
    peak = max((value for _, value in rows), default=0) or 1
    total = sum(value for _, value in rows)
    if rows:
        leader, most = rows[0]
        desc = (
            f"{len(rows)} bars, {human_bytes(total)} in all; "
            f"largest {leader} with {human_bytes(most)}."
        )
    else:
        desc = "No traffic in this period."
    cid = escape(chart_id)
    parts: list[str] = [
        f'<svg class="chart chart--ranked" id="{cid}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-labelledby="{cid}-title {cid}-desc" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="12" style="max-width:100%;height:auto">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(desc)}</desc>',
    ]
    for i, (label, value) in enumerate(rows):
        y = top + i * (bar_height + gap)
        w = max(value * plot_w / peak, 1.0) if value > 0 else 0.0
        short = label if len(label) <= 36 else label[:35] + "…"
        parts.append(
            f"<g><title>{escape(label)}: {escape(human_bytes(value))}</title>"
            f'<text x="{left - 8}" y="{y + bar_height - 5}" text-anchor="end" '
            f'fill="{TEXT_COLOUR}">{escape(short)}</text>'
            f'<rect class="bar bar--ranked" x="{left}" y="{y}" width="{w:.1f}" '
            f'height="{bar_height}" fill="{DOWN_COLOUR if i == 0 else UP_COLOUR}" '
            f'data-bytes="{value}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + bar_height - 5}" fill="{TEXT_COLOUR}">'
            f"{escape(human_bytes(value))}</text></g>"
        )
    if not rows:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{top + bar_height - 5}" text-anchor="middle" '
            f'fill="{TEXT_COLOUR}">{escape(desc)}</text>'
        )
    parts.append("</svg>")
    # Every interpolated value above is a number or passed through escape().
    return mark_safe("".join(parts))  # noqa: S308
