"""The operators' admin site: Django's AdminSite with an "at a glance" panel on the index.

Installed through `goproxy_site.apps.GoproxyAdminConfig` (Django's documented way to
replace the default site), so `admin.site` and every `@admin.register` use it. Like
`urls.py` it composes the apps: the panel reads both databases through their selectors.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from accounts import selectors as account_selectors
from goproxy_site.formatting import human_bytes
from plans import selectors as plan_selectors
from plans.charts import daily_usage_svg
from plans.models import SubscriptionStatus

TRAFFIC_CHART_DAYS = 14


def operator_totals() -> dict[str, Any]:
    """Numbers for the index panel: users, subscriptions, traffic today, a 14-day chart."""
    users = account_selectors.user_counts()
    statuses = plan_selectors.subscription_counts_by_status()
    series = plan_selectors.usage_daily_totals(days=TRAFFIC_CHART_DAYS)
    today = series[-1]
    with_plan = len(plan_selectors.user_ids_with_current_subscription())
    lag = plan_selectors.controller_lag(max_lag_seconds=settings.PLANS_MAX_LAG_SECONDS)
    return {
        "controller_lag": lag,
        "users_total": users["total"],
        "users_active": users["active"],
        "users_without_plan": max(users["total"] - with_plan, 0),
        "subscriptions_active": statuses[SubscriptionStatus.ACTIVE],
        "subscriptions_limited": statuses[SubscriptionStatus.LIMITED],
        "subscriptions_expired": statuses[SubscriptionStatus.EXPIRED],
        "subscriptions_disabled": statuses[SubscriptionStatus.DISABLED],
        "near_limit": len(plan_selectors.user_ids_near_limit()),
        "expiring": len(plan_selectors.user_ids_expiring()),
        "traffic_today": human_bytes(today["bytes_up"] + today["bytes_down"]),
        "traffic_today_up": human_bytes(today["bytes_up"]),
        "traffic_today_down": human_bytes(today["bytes_down"]),
        "chart_days": TRAFFIC_CHART_DAYS,
        "chart": daily_usage_svg(
            series, chart_id="all-traffic", title=f"All traffic, last {len(series)} days"
        ),
    }


class OperatorAdminSite(admin.AdminSite):
    """The index adds `goproxy_totals`, rendered by templates/admin/index.html."""

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {"goproxy_totals": operator_totals(), **(extra_context or {})}
        return super().index(request, extra_context=context)
