"""Template context every portal page may use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from . import selectors


def portal(request: HttpRequest) -> dict[str, Any]:
    """`support_email`, and `email_verified` (a callable: the query runs only on pages that
    show it)."""
    user = getattr(request, "user", None)

    def email_verified() -> bool:
        return bool(
            user and user.is_authenticated and selectors.user_email_verified(user_id=user.pk)
        )

    verified: Callable[[], bool] = email_verified
    return {"support_email": settings.SUPPORT_EMAIL, "email_verified": verified}
