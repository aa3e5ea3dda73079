"""How allauth's signup, login and Google sign-in fit the accounts app.

allauth drives the flows (signup, login, verification, reset, rate limits); these
adapters only say what is particular here: usernames are the lower-cased e-mail, a
disabled account is told so, and an address Google has verified counts as verified.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from . import selectors, services
from .models import User

USERNAME_MAX_LENGTH = 150


def disabled_message() -> str:
    return f"This account is disabled — contact support at {settings.SUPPORT_EMAIL}."


def _username_from_email(user: AbstractBaseUser) -> None:
    # Portal usernames are the lower-cased address, as they were before allauth (proxy
    # logins are suggested from them); allauth generates one when that is not possible.
    if not isinstance(user, User) or user.username or not user.email:
        return
    candidate = user.email.lower()
    if len(candidate) <= USERNAME_MAX_LENGTH and not selectors.user_username_taken(
        username=candidate
    ):
        user.username = candidate


class AccountAdapter(DefaultAccountAdapter):
    def populate_username(self, request: HttpRequest, user: AbstractBaseUser) -> None:
        _username_from_email(user)
        super().populate_username(request, user)

    def respond_user_inactive(self, request: HttpRequest, user: AbstractBaseUser) -> HttpResponse:
        # Only a correct password (or Google) gets here: saying "disabled" discloses
        # nothing to someone guessing.
        messages.error(request, disabled_message())
        return HttpResponseRedirect(reverse("account_login"))

    def post_login(
        self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any
    ) -> HttpResponse:
        sociallogin = (kwargs.get("signal_kwargs") or {}).get("sociallogin")
        if isinstance(sociallogin, SocialLogin) and isinstance(user, User):
            # After allauth's own checks (a password set by whoever registered the
            # address unverified is wiped before this point).
            verified = {a.email.lower() for a in sociallogin.email_addresses if a.verified}
            if user.email.lower() in verified:
                services.email_mark_verified(user=user)
        return super().post_login(request, user, **kwargs)
