"""The operators' admin site: Django's AdminSite branded with SITE_NAME, an "at a glance"
panel on the index, a traffic report, and the pipeline's tables kept out of the way.

Installed through `goproxy_site.apps.GoproxyAdminConfig` (Django's documented way to
replace the default site), so `admin.site` and every `@admin.register` use it. Like
`urls.py` it composes the apps: the panel and the report read both databases through
their selectors, the users of a page in one batch.

A ModelAdmin with `internal = True` (outbox, sequence marks, restrictions) is listed in
an "Internals" section after the apps; its permission methods decide who sees it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from accounts import selectors as account_selectors
from accounts.admin_lookup import user_link_html
from goproxy_site.formatting import human_bytes, local_time
from plans import selectors as plan_selectors
from plans.charts import daily_usage_svg, ranked_bars_svg, subscription_usage_bar
from plans.models import SubscriptionStatus

TRAFFIC_CHART_DAYS = 14
# The traffic report's periods: query value -> (label, calendar days including today).
REPORT_PERIODS = {"today": ("Today", 1), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30)}
REPORT_DEFAULT_PERIOD = "7d"
REPORT_TOP_USERS = 20
REPORT_NEAR_LIMIT = 50
REPORT_PERMISSION = "plans.view_usagebucket"


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


def _share(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.1f} %" if whole else "—"


def traffic_report(*, period: str) -> dict[str, Any]:
    """The traffic report of one period: top users, traffic per plan, users near their
    limit and a daily chart. Every user on the page comes from one accounts query."""
    label, days = REPORT_PERIODS[period]
    since = plan_selectors.days_back(days)
    total = plan_selectors.usage_total_since(since=since)
    top = plan_selectors.usage_top_users(since=since, limit=REPORT_TOP_USERS)
    per_plan = plan_selectors.usage_by_plan(since=since)
    near = plan_selectors.subscriptions_near_limit(limit=REPORT_NEAR_LIMIT)
    top_ids = [row["user_id"] for row in top]
    users = account_selectors.users_by_id(user_ids={*top_ids, *(s.user_id for s in near)})
    current = plan_selectors.subscriptions_current_by_user(user_ids=top_ids)
    chart_days = max(days, 7)
    series = plan_selectors.usage_daily_totals(days=chart_days)

    def name(user_id: int) -> str:
        user = users.get(user_id)
        return user.label if user else f"user {user_id} (deleted)"

    return {
        "period": period,
        "period_label": label,
        "periods": [(key, text) for key, (text, _) in REPORT_PERIODS.items()],
        "since": local_time(since),
        "first_day": since.date().isoformat(),
        "total": human_bytes(total),
        "top_users": [
            {
                "rank": rank,
                "user": user_link_html(row["user_id"], users.get(row["user_id"])),
                "plan": current[row["user_id"]].plan.name if row["user_id"] in current else "—",
                "up": human_bytes(row["bytes_up"]),
                "down": human_bytes(row["bytes_down"]),
                "total": human_bytes(row["total"]),
                "share": _share(row["total"], total),
            }
            for rank, row in enumerate(top, start=1)
        ],
        "top_chart": ranked_bars_svg(
            [(name(row["user_id"]), row["total"]) for row in top[:10]],
            chart_id="top-users",
            title=f"Top users by traffic, {label.lower()}",
        ),
        "per_plan": [
            {
                "plan": row["plan"],
                "users": row["users"],
                "up": human_bytes(row["bytes_up"]),
                "down": human_bytes(row["bytes_down"]),
                "total": human_bytes(row["total"]),
                "share": _share(row["total"], total),
            }
            for row in per_plan
        ],
        "plan_chart": ranked_bars_svg(
            [(row["plan"], row["total"]) for row in per_plan],
            chart_id="traffic-per-plan",
            title=f"Traffic per plan, {label.lower()}",
        ),
        "near_limit": [
            {
                "user": user_link_html(sub.user_id, users.get(sub.user_id)),
                "plan": sub.plan.name,
                "status": sub.get_status_display(),
                "usage": subscription_usage_bar(sub),
                "expires": local_time(sub.expires_at) if sub.expires_at else "never",
                "subscription_url": reverse("admin:plans_subscription_change", args=[sub.pk]),
            }
            for sub in near
        ],
        "near_limit_max": REPORT_NEAR_LIMIT,
        "daily_chart": daily_usage_svg(
            series, chart_id="report-daily", title=f"All traffic, last {chart_days} days"
        ),
    }


class OperatorAdminSite(admin.AdminSite):
    """The index adds `goproxy_totals`, rendered by templates/admin/index.html."""

    index_title = "Operations"

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        # The brand is read on every page, so SITE_NAME needs no restart of the site object.
        return {
            **super().each_context(request),
            "site_header": f"{settings.SITE_NAME} operations",
            "site_title": f"{settings.SITE_NAME} admin",
        }

    def get_urls(self) -> list[URLResolver | URLPattern]:
        report = path("traffic/", self.admin_view(self.traffic_view), name="traffic")
        return [report, *super().get_urls()]

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {"goproxy_totals": operator_totals(), **(extra_context or {})}
        return super().index(request, extra_context=context)

    def traffic_view(self, request: HttpRequest) -> TemplateResponse:
        """Top users and traffic (?period=today|7d|30d)."""
        if not request.user.has_perm(REPORT_PERMISSION):
            raise PermissionDenied
        period = request.GET.get("period", REPORT_DEFAULT_PERIOD)
        if period not in REPORT_PERIODS:
            messages.error(
                request,
                f"Unknown period “{period}”; choose one of {', '.join(REPORT_PERIODS)}. "
                f"Showing {REPORT_PERIODS[REPORT_DEFAULT_PERIOD][0].lower()}.",
            )
            period = REPORT_DEFAULT_PERIOD
        context = {
            **self.each_context(request),
            "title": "Top users and traffic",
            "report": traffic_report(period=period),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/traffic.html", context)

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        """Apps as Django lists them, with the internal tables moved to "Internals" and
        a "Reports" section first (the index and the sidebar)."""
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps
        internals: list[dict[str, Any]] = []
        for app in apps:
            keep = []
            for entry in app["models"]:
                model_admin = self._registry.get(entry["model"])
                if getattr(model_admin, "internal", False):
                    internals.append({**entry, "name": f"{entry['name']} ({app['name']})"})
                else:
                    keep.append(entry)
            app["models"] = keep
        apps = [app for app in apps if app["models"]]
        if request.user.has_perm(REPORT_PERMISSION):
            url = reverse("admin:traffic", current_app=self.name)
            report = {
                "name": "Top users and traffic",
                "object_name": "TrafficReport",
                "perms": {"view": True},
                "admin_url": url,
                "add_url": None,
                "view_only": True,
            }
            reports = {"name": "Reports", "app_label": "reports", "app_url": url}
            apps.insert(0, {**reports, "has_module_perms": True, "models": [report]})
        if internals:
            index = reverse("admin:index", current_app=self.name)
            apps.append(
                {
                    "name": "Internals",
                    "app_label": "internals",
                    "app_url": f"{index}#internals",
                    "has_module_perms": True,
                    "models": sorted(internals, key=lambda entry: entry["name"]),
                }
            )
        return apps
