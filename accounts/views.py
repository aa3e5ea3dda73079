"""Portal pages: dashboard, proxy credentials, e-mail verification resend, deletion.

Views parse input, call one service or a few selectors, and render. Signup, login,
logout, e-mail verification, password change/reset and two-factor authentication are
allauth's views (`allauth.urls`) with the portal's templates in `templates/account/`,
`templates/mfa/` and `templates/allauth/`.

Every form that changes state answers with a redirect (Post/Redirect/Get): a freshly
issued secret waits in the session, sealed, for the one GET that shows it, so reloading
never issues or rotates again.
"""

from __future__ import annotations

import secrets
import time
from http import HTTPStatus
from typing import Any

from allauth.account.views import LoginView as AllauthLoginView
from allauth.core import ratelimit
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.generic import FormView, TemplateView, View

from goproxy_site.formatting import human_bytes
from plans import selectors as plan_selectors
from plans.charts import daily_usage_svg, usage_bar_html
from plans.views import lifecycle_panel, plan_catalogue

from . import selectors, services
from .crypto import secret_seal, secret_unseal
from .forms import AccountDeleteForm, CredentialIssueForm
from .guards import VerifiedEmailRequiredMixin
from .models import ProxyCredential
from .requests import AuthenticatedHttpRequest

# A secret waits this long in the session for the page that shows it.
ISSUED_SECRET_TTL = 600
ISSUED_SESSION_KEY = "accounts_issued_secrets"
ISSUED_MAX_WAITING = 10
RESEND_LIMITED_MESSAGE = (
    "A verification link was sent to {email} a moment ago. Check your inbox (and spam "
    "folder), or ask again in a few minutes."
)


def proxy_example(*, login: str, secret: str) -> dict[str, str]:
    """The proxy URL and a ready `curl -x` line for a credential."""
    host, port = settings.PROXY_PUBLIC_HOST, settings.PROXY_PORT
    proxy_url = f"http://{login}:{secret}@{host}:{port}"
    return {
        "proxy_host": host,
        "proxy_port": str(port),
        "proxy_url": proxy_url,
        "curl_line": f"curl -x {proxy_url} {settings.PORTAL_CURL_EXAMPLE_URL}",
    }


class HomeView(TemplateView):
    template_name = "accounts/home.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return redirect("dashboard")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(catalogue=plan_catalogue(user_id=None), **kwargs)


class LoginView(AllauthLoginView):
    """allauth's login; a login refused by the failed-attempts limit answers 429."""

    def form_invalid(self, form: Form) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "too_many_login_attempts"):
            response.status_code = HTTPStatus.TOO_MANY_REQUESTS
        return response


@method_decorator(never_cache, name="dispatch")  # shows the private subscription URL
class DashboardView(LoginRequiredMixin, TemplateView):
    template_name = "accounts/dashboard.html"
    request: AuthenticatedHttpRequest

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        user_id = self.request.user.pk
        sub = plan_selectors.subscription_get_current(user_id=user_id)
        days = settings.PORTAL_USAGE_CHART_DAYS
        series = plan_selectors.usage_daily_series(user_id=user_id, days=days)
        return super().get_context_data(
            subscription=sub,
            usage_bar=usage_bar_html(used=sub.bytes_used, limit=sub.traffic_limit_bytes)
            if sub
            else None,
            chart_days=days,
            usage_series=series,
            usage_chart=daily_usage_svg(series, title=f"Your traffic, last {days} days"),
            usage_rows=[
                {
                    "period": p["period"],
                    "up": human_bytes(p["bytes_up"]),
                    "down": human_bytes(p["bytes_down"]),
                }
                for p in reversed(series)
            ],
            usage_total_up=human_bytes(sum(p["bytes_up"] for p in series)),
            usage_total_down=human_bytes(sum(p["bytes_down"] for p in series)),
            bytes_up=human_bytes(sub.bytes_up) if sub else None,
            bytes_down=human_bytes(sub.bytes_down) if sub else None,
            catalogue=plan_catalogue(user_id=user_id, email=self.request.user.email),
            live_credentials=selectors.credential_list(
                user=self.request.user, include_revoked=False
            ).count(),
            email_verified=selectors.user_email_verified(user_id=user_id),
            **lifecycle_panel(user_id=user_id),
            **kwargs,
        )


class EmailVerificationResendView(LoginRequiredMixin, View):
    """Mail the verification link again, at most as often as allauth's limits allow."""

    http_method_names = ["post"]
    request: AuthenticatedHttpRequest

    def post(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        user = request.user
        if selectors.user_email_verified(user_id=user.pk):
            messages.info(request, f"{user.email} is already verified.")
            return redirect("dashboard")
        # Per address and per client IP ("confirm_email" in ACCOUNT_RATE_LIMITS).
        if not ratelimit.consume(request, action="confirm_email", key=user.email.lower()):
            messages.error(request, RESEND_LIMITED_MESSAGE.format(email=user.email))
            response = render(request, "429.html", status=HTTPStatus.TOO_MANY_REQUESTS)
            response["Retry-After"] = "180"
            return response
        services.email_verification_send(user=user, request=request)
        messages.success(request, f"We sent a new verification link to {user.email}.")
        return redirect("dashboard")


def _secret_hold(request: HttpRequest, issued: services.IssuedCredential, *, action: str) -> str:
    """Keep a new secret in the session for the one page that shows it; returns its token."""
    now = time.time()
    waiting: dict[str, dict[str, Any]] = {
        token: entry
        for token, entry in request.session.get(ISSUED_SESSION_KEY, {}).items()
        if entry["until"] > now
    }
    while len(waiting) >= ISSUED_MAX_WAITING:
        waiting.pop(next(iter(waiting)))
    token = secrets.token_urlsafe(16)
    waiting[token] = {
        "credential_id": issued.credential.pk,
        "secret": secret_seal(issued.secret),
        "action": action,
        "until": now + ISSUED_SECRET_TTL,
    }
    request.session[ISSUED_SESSION_KEY] = waiting
    return token


def _secret_take(request: HttpRequest, token: str) -> dict[str, Any] | None:
    waiting: dict[str, dict[str, Any]] = request.session.get(ISSUED_SESSION_KEY, {})
    entry = waiting.pop(token, None)
    if waiting:
        request.session[ISSUED_SESSION_KEY] = waiting
    else:
        request.session.pop(ISSUED_SESSION_KEY, None)
    if entry is None or entry["until"] <= time.time():
        return None
    secret = secret_unseal(entry["secret"])
    return None if secret is None else {**entry, "secret": secret}


@method_decorator(never_cache, name="dispatch")
class CredentialsView(LoginRequiredMixin, VerifiedEmailRequiredMixin, FormView):
    """Lists the user's credentials; POST issues a new one (verified addresses only)."""

    template_name = "accounts/credentials.html"
    form_class = CredentialIssueForm
    request: AuthenticatedHttpRequest

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            credentials=selectors.credential_list(user=self.request.user),
            max_live=settings.API_MAX_LIVE_CREDENTIALS,
            proxy_address=f"{settings.PROXY_PUBLIC_HOST}:{settings.PROXY_PORT}",
            email_verified=selectors.user_email_verified(user_id=self.request.user.pk),
            **kwargs,
        )

    def form_valid(self, form: CredentialIssueForm) -> HttpResponse:
        try:
            issued = services.credential_issue_within_limit(
                user=self.request.user, login=form.cleaned_data["login"]
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc)
            return self.form_invalid(form)
        token = _secret_hold(self.request, issued, action="issued")
        return redirect("credential-issued", token=token)


class CredentialIssuedView(LoginRequiredMixin, View):
    """The one page that ever shows a secret: once, right after issue or rotate."""

    http_method_names = ["get"]
    request: AuthenticatedHttpRequest

    def get(self, request: AuthenticatedHttpRequest, token: str) -> HttpResponse:
        entry = _secret_take(request, token)
        credential = (
            ProxyCredential.objects.filter(pk=entry["credential_id"], user=request.user).first()
            if entry
            else None
        )
        if entry is None or credential is None:
            messages.info(
                request,
                "That secret was shown once and is not kept. If you did not copy it, "
                "rotate the credential to get a new one.",
            )
            return redirect("credentials")
        context = {
            "credential": credential,
            "secret": entry["secret"],
            "action": entry["action"],
            **proxy_example(login=credential.login, secret=entry["secret"]),
        }
        response = render(request, "accounts/credential_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response


class _OwnCredentialMixin(LoginRequiredMixin, View):
    request: AuthenticatedHttpRequest

    def credential(self, pk: int) -> ProxyCredential:
        # Another user's credential id answers 404, like a missing one.
        return get_object_or_404(ProxyCredential, pk=pk, user=self.request.user)


@method_decorator(never_cache, name="dispatch")
class CredentialRotateView(_OwnCredentialMixin):
    """GET asks for confirmation (the old secret stops working); POST rotates."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        credential = self.credential(pk)
        if credential.is_revoked:
            messages.error(request, "A revoked credential cannot be rotated.")
            return redirect("credentials")
        return render(request, "accounts/credential_rotate.html", {"credential": credential})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        credential = self.credential(pk)
        try:
            issued = services.credential_rotate(credential=credential)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("credentials")
        token = _secret_hold(request, issued, action="rotated")
        return redirect("credential-issued", token=token)


class CredentialRevokeView(_OwnCredentialMixin):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        credential = services.credential_revoke(credential=self.credential(pk))
        messages.success(request, f"Revoked {credential.login}; it no longer works.")
        return redirect("credentials")


class AccountDeleteView(LoginRequiredMixin, FormView):
    template_name = "accounts/account_delete.html"
    form_class = AccountDeleteForm
    success_url = reverse_lazy("home")
    request: AuthenticatedHttpRequest

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "user": self.request.user}

    def form_valid(self, form: AccountDeleteForm) -> HttpResponse:
        user = self.request.user
        email = user.email
        services.user_delete_account(user=user)
        logout(self.request)
        messages.success(self.request, f"The account {email} and its credentials are deleted.")
        return super().form_valid(form)


home_view = HomeView.as_view()
login_view = LoginView.as_view()
dashboard_view = DashboardView.as_view()
email_verification_resend_view = EmailVerificationResendView.as_view()
credentials_view = CredentialsView.as_view()
credential_issued_view = CredentialIssuedView.as_view()
credential_rotate_view = CredentialRotateView.as_view()
credential_revoke_view = CredentialRevokeView.as_view()
account_delete_view = AccountDeleteView.as_view()
