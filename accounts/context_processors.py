"""Template context every portal page may use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from . import selectors


def portal(request: HttpRequest) -> dict[str, Any]:
    """`support_email`, and `email_verified`: a callable, so the query runs only on the
    pages that show it (views may pass the value instead)."""
    user = getattr(request, "user", None)

    def email_verified() -> bool:
        return bool(
            user is not None
            and user.is_authenticated
            and selectors.user_email_verified(user_id=user.pk)
        )

    return {"support_email": settings.SUPPORT_EMAIL, "email_verified": email_verified}
