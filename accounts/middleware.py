"""Middleware around allauth.

AdminAccessMiddleware: who gets into the admin. Operators sign in through the portal's
login (the admin's own form would skip allauth's rate limits and second factor, so it
sends people there: allauth's `secure_admin_login`), and with ADMIN_REQUIRE_2FA only
after a TOTP or recovery-code check in this session.

SocialAppMissingMiddleware: Google sign-in is off until it is configured; its URLs then
answer 404 instead of allauth's error (500).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from allauth.account.authentication import get_authentication_records
from allauth.account.decorators import secure_admin_login
from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from allauth.socialaccount.models import SocialApp
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

ADMIN_NAMESPACE = "admin"
SETUP_MESSAGE = (
    "The admin requires two-factor authentication: set up an authenticator app, then "
    "confirm a code."
)
CONFIRM_MESSAGE = "Confirm a code from your authenticator app to open the admin."


def session_passed_second_factor(request: HttpRequest) -> bool:
    """Whether this session's sign-in (or a later re-check) included TOTP or a recovery code."""
    records = get_authentication_records(request, request.user)
    return any(record.get("method") == "mfa" for record in records)


def _redirect(url_name: str, request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(
        f"{reverse(url_name)}?{urlencode({'next': request.get_full_path()})}"
    )


class AdminAccessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or match.namespace != ADMIN_NAMESPACE:
            return None
        if match.url_name == "login":
            response: HttpResponse = secure_admin_login(view_func)(
                request, *view_args, **view_kwargs
            )
            return response
        user = request.user
        if not settings.ADMIN_REQUIRE_2FA or not (user.is_authenticated and user.is_staff):
            return None
        if session_passed_second_factor(request):
            return None
        if not is_mfa_enabled(user, [Authenticator.Type.TOTP]):
            messages.warning(request, SETUP_MESSAGE)
            return _redirect("mfa_activate_totp", request)
        messages.info(request, CONFIRM_MESSAGE)
        return _redirect("mfa_reauthenticate", request)


class SocialAppMissingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, SocialApp.DoesNotExist):
            raise Http404("This sign-in provider is not configured.") from exception
