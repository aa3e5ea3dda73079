"""Portal pages: signup, dashboard, proxy credentials, account deletion.

Views parse input, call one service or a few selectors, and render. Login, logout and
password change/reset are Django's auth views (`django.contrib.auth.urls`) with the
templates in `templates/registration/`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
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
from .forms import AccountDeleteForm, CredentialIssueForm, SignupForm
from .models import ProxyCredential
from .requests import AuthenticatedHttpRequest


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


class SignupView(FormView):
    template_name = "accounts/signup.html"
    form_class = SignupForm
    success_url = reverse_lazy("dashboard")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated:
            return redirect("dashboard")
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: SignupForm) -> HttpResponse:
        try:
            user = services.user_signup(
                email=form.cleaned_data["email"], password=form.cleaned_data["password1"]
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.form_invalid(form)
        login(self.request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(self.request, "Welcome! Your account is ready.")
        return super().form_valid(form)


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
            catalogue=plan_catalogue(user_id=user_id),
            live_credentials=selectors.credential_list(
                user=self.request.user, include_revoked=False
            ).count(),
            **lifecycle_panel(user_id=user_id),
            **kwargs,
        )


@method_decorator(never_cache, name="dispatch")
class CredentialsView(LoginRequiredMixin, FormView):
    """Lists the user's credentials; POST issues a new one and shows its secret once."""

    template_name = "accounts/credentials.html"
    form_class = CredentialIssueForm
    request: AuthenticatedHttpRequest

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            credentials=selectors.credential_list(user=self.request.user),
            max_live=settings.API_MAX_LIVE_CREDENTIALS,
            proxy_address=f"{settings.PROXY_PUBLIC_HOST}:{settings.PROXY_PORT}",
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
        return render_issued(self.request, issued, action="issued")


def render_issued(
    request: HttpRequest, issued: services.IssuedCredential, *, action: str
) -> HttpResponse:
    """The one page that ever shows a secret; rendered from the POST, never stored."""
    context = {
        "credential": issued.credential,
        "secret": issued.secret,
        "action": action,
        **proxy_example(login=issued.credential.login, secret=issued.secret),
    }
    response = render(request, "accounts/credential_issued.html", context)
    response["Cache-Control"] = "no-store"
    return response


class _OwnCredentialMixin(LoginRequiredMixin, View):
    http_method_names = ["post"]
    request: AuthenticatedHttpRequest

    def credential(self, pk: int) -> ProxyCredential:
        # Another user's credential id answers 404, like a missing one.
        return get_object_or_404(ProxyCredential, pk=pk, user=self.request.user)


@method_decorator(never_cache, name="dispatch")
class CredentialRotateView(_OwnCredentialMixin):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        credential = self.credential(pk)
        try:
            issued = services.credential_rotate(credential=credential)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("credentials")
        return render_issued(request, issued, action="rotated")


class CredentialRevokeView(_OwnCredentialMixin):
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
signup_view = SignupView.as_view()
dashboard_view = DashboardView.as_view()
credentials_view = CredentialsView.as_view()
credential_rotate_view = CredentialRotateView.as_view()
credential_revoke_view = CredentialRevokeView.as_view()
account_delete_view = AccountDeleteView.as_view()
