"""Portal pages for plans: the public catalogue and claiming the free plan."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import TemplateView, View

from goproxy_site.formatting import human_bytes

from . import selectors, services
from .models import Plan


def plan_catalogue(*, user_id: int | None) -> list[dict[str, Any]]:
    """Public plans for display, each flagged with whether this user may claim it now."""
    may_claim = user_id is not None and selectors.free_plan_claim_allowed(user_id=user_id)
    return [
        {
            "plan": plan,
            "limit": human_bytes(plan.traffic_limit_bytes),
            "claimable": plan.is_free and may_claim,
        }
        for plan in selectors.plan_list(public_only=True)
    ]


class CatalogueView(TemplateView):
    template_name = "plans/catalogue.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        user = self.request.user
        user_id = user.pk if user.is_authenticated else None
        return super().get_context_data(
            catalogue=plan_catalogue(user_id=user_id),
            subscription=selectors.subscription_get_current(user_id=user_id) if user_id else None,
            **kwargs,
        )


class ClaimFreePlanView(LoginRequiredMixin, View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = get_object_or_404(Plan, pk=pk)
        try:
            sub = services.plan_claim_free_self_service(user_id=request.user.pk, plan=plan)
        except services.FreePlanAlreadyClaimed:
            messages.error(request, "You have already claimed the free plan once.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request,
                f"The {plan.name} plan is yours: {human_bytes(sub.traffic_limit_bytes)} of traffic"
                + (f" until {sub.expires_at:%Y-%m-%d %H:%M} UTC." if sub.expires_at else "."),
            )
        return redirect("dashboard")


catalogue_view = CatalogueView.as_view()
claim_free_plan_view = ClaimFreePlanView.as_view()


def subscription_userinfo_header(info: dict[str, Any]) -> str:
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
