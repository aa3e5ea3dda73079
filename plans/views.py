"""Portal pages for plans: the catalogue, claiming the free plan, the queued next plan
and the private subscription URL (shown and rotated from the dashboard)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import TemplateView, View

from accounts.guards import VerifiedEmailRequiredMixin
from accounts.requests import AuthenticatedHttpRequest
from goproxy_site.formatting import human_bit_rate, human_bytes, local_time, local_zone

from . import selectors, services
from .history import BY_USER
from .history_text import event_sentence
from .links import subscription_url
from .models import Plan, Subscription

HISTORY_ROWS = 10


def self_queueable_plans() -> QuerySet[Plan]:
    """The plans a user may queue themselves (the same selector the API uses)."""
    return selectors.plan_list_self_queueable()


def plan_catalogue(*, user_id: int | None, email: str | None = None) -> list[dict[str, Any]]:
    """Public plans for display, each flagged with whether this user (with this e-mail
    address) may claim or queue it."""
    may_claim = user_id is not None and selectors.free_plan_claim_allowed(
        user_id=user_id, email=email
    )
    queueable = (
        set(self_queueable_plans().values_list("pk", flat=True)) if user_id is not None else set()
    )
    return [
        {
            "plan": plan,
            "limit": human_bytes(plan.traffic_limit_bytes),
            "speed": human_bit_rate(plan.speed_limit_bps),
            "throttle_speed": human_bit_rate(plan.throttle_speed_bps) if plan.throttles else None,
            "claimable": plan.is_free and may_claim,
            "queueable": plan.pk in queueable,
        }
        for plan in selectors.plan_list(public_only=True)
    ]


def lifecycle_panel(*, user_id: int) -> dict[str, Any]:
    """Dashboard context: the private subscription URL, recent history and the queued plan.

    The URL is built like the API's (PLANS_SUBSCRIPTION_URL_BASE, default SITE_URL), so
    the portal and `me/subscription-url/` always show the same address. A user who never
    had a plan has none yet; the page offers a POST that creates it. History entries are
    sentences in local time; the "Next plan" card names only plans the user may queue.
    """
    token = selectors.subscription_token_of_user(user_id=user_id)
    events = selectors.user_history(user_id=user_id, limit=HISTORY_ROWS)
    return {
        "subscription_url": subscription_url(token) if token else None,
        "history_rows": [
            {"at": e.at, "when": local_time(e.at), "what": event_sentence(e)}
            for e in reversed(events)
        ],
        "history_zone": local_zone().key,
        "queued": selectors.queued_plan_get(user_id=user_id),
        "queueable_names": list(self_queueable_plans().values_list("name", flat=True)),
    }


class CatalogueView(TemplateView):
    template_name = "plans/catalogue.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        user = self.request.user
        user_id = user.pk if user.is_authenticated else None
        return super().get_context_data(
            catalogue=plan_catalogue(user_id=user_id, email=getattr(user, "email", None)),
            subscription=selectors.subscription_get_current(user_id=user_id) if user_id else None,
            queued=selectors.queued_plan_get(user_id=user_id) if user_id else None,
            **kwargs,
        )


class ClaimFreePlanView(LoginRequiredMixin, VerifiedEmailRequiredMixin, View):
    """Claim a free plan: verified addresses only, once per person."""

    http_method_names = ["post"]

    def post(self, request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
        plan = get_object_or_404(Plan, pk=pk)
        try:
            sub = services.plan_claim_free(
                user_id=request.user.pk, email=request.user.email, plan=plan, public_only=True
            )
        except services.FreePlanAlreadyClaimed as exc:
            messages.error(request, str(exc))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request,
                f"The {plan.name} plan is yours: {human_bytes(sub.traffic_limit_bytes)} of traffic"
                + (f" until {sub.expires_at:%Y-%m-%d %H:%M} UTC." if sub.expires_at else "."),
            )
        return redirect("dashboard")


class QueuePlanView(LoginRequiredMixin, View):
    """Queue a plan as the user's next one, under the same rule and service as the API."""

    http_method_names = ["post"]

    def post(self, request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
        plan = get_object_or_404(Plan, pk=pk)
        if not self_queueable_plans().filter(pk=plan.pk).exists():
            messages.error(
                request,
                f"The {plan.name} plan cannot be queued from the portal; "
                "paid plans are queued by the operator.",
            )
            return redirect("dashboard")
        result = services.plan_queue(user_id=request.user.pk, plan=plan, by=BY_USER)
        if isinstance(result, Subscription):
            messages.success(request, f"The {plan.name} plan is now your plan.")
        else:
            messages.success(
                request,
                f"The {plan.name} plan is queued; it takes over when your current plan "
                "expires or runs out of traffic.",
            )
        return redirect("dashboard")


class QueueCancelView(LoginRequiredMixin, View):
    http_method_names = ["post"]

    def post(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        if services.plan_queue_cancel(user_id=request.user.pk, by=BY_USER):
            messages.success(request, "Your queued plan is cancelled.")
        else:
            messages.error(request, "You have no queued plan.")
        return redirect("dashboard")


class SubscriptionUrlRotateView(LoginRequiredMixin, View):
    http_method_names = ["post"]

    def post(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        had_one = selectors.subscription_token_of_user(user_id=request.user.pk) is not None
        services.subscription_token_rotate(user_id=request.user.pk)
        if had_one:
            messages.success(
                request,
                "Your subscription URL is replaced; the old one stops working now. "
                "Update it in your client apps.",
            )
        else:
            messages.success(request, "Your subscription URL is ready.")
        return redirect(reverse("dashboard") + "#subscription-url-heading")


catalogue_view = CatalogueView.as_view()
claim_free_plan_view = ClaimFreePlanView.as_view()
queue_plan_view = QueuePlanView.as_view()
queue_cancel_view = QueueCancelView.as_view()
subscription_url_rotate_view = SubscriptionUrlRotateView.as_view()


def subscription_userinfo_header(info: selectors.SubscriptionUserinfo) -> str:
    return "upload={upload}; download={download}; total={total}; expire={expire}".format(**info)


def subscription_url_view(request: HttpRequest, token: str) -> HttpResponse:
    """The private subscription URL: `subscription-userinfo` header + a plain-text summary.

    No login: the unguessable token is the credential (rotatable from the portal/API).
    """
    row = selectors.subscription_token_get(token=token)
    if row is None:
        return HttpResponse(
            "Unknown subscription URL (it may have been rotated).\n",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    info = selectors.subscription_userinfo(user_id=row.user_id)
    used = info["upload"] + info["download"]
    lines = [
        f"plan: {info['plan'] or 'none'}",
        f"status: {info['status'] or 'no subscription'}",
        f"used: {human_bytes(used)} (up {human_bytes(info['upload'])}, "
        f"down {human_bytes(info['download'])})",
        f"limit: {human_bytes(info['total'] or None)}",
        "expires: "
        + (
            datetime.fromtimestamp(info["expire"], UTC).strftime("%Y-%m-%d %H:%M UTC")
            if info["expire"]
            else "never"
        ),
    ]
    if info.get("next_reset_at"):
        lines.append(f"next reset: {info['next_reset_at']}")
    response = HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")
    response["subscription-userinfo"] = subscription_userinfo_header(info)
    response["profile-update-interval"] = "1"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response
