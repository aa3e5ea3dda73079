"""The "verified e-mail only" rule shared by the portal and the API.

Claiming the free plan, buying a plan and issuing proxy credentials need a verified
address: otherwise one person could open accounts under made-up addresses. The rule is
`require_verified_email`; portal views apply it with `VerifiedEmailRequiredMixin`
(which sends the user to the dashboard, where the link can be mailed again), API views
call it and the API answers 403 with its message.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect

from . import selectors

UNVERIFIED_MESSAGE = (
    "Verify your e-mail address first: open the link we sent to {email} "
    "(the dashboard can send it again)."
)


class EmailNotVerified(PermissionDenied):
    """The user's e-mail address is not verified; str() says what to do."""

    code = "email_unverified"


def require_verified_email(*, user: AbstractBaseUser | AnonymousUser) -> None:
    """Raise EmailNotVerified unless `user` is signed in with a verified address."""
    if not user.is_authenticated or not selectors.user_email_verified(user_id=user.pk):
        email = getattr(user, "email", "") or "your address"
        raise EmailNotVerified(UNVERIFIED_MESSAGE.format(email=email))


class VerifiedEmailRequiredMixin:
    """A portal view whose POST needs a verified address (put it after LoginRequiredMixin).

    Unverified users get the guard's message on the dashboard instead of the change.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST" and request.user.is_authenticated:
            try:
                require_verified_email(user=request.user)
            except EmailNotVerified as exc:
                messages.error(request, str(exc))
                return redirect("dashboard")
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
