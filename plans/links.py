"""Absolute links handed out by the portal and the API (the same address in both)."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse


def subscription_url(token: str) -> str:
    """The private subscription URL of a token, on PLANS_SUBSCRIPTION_URL_BASE."""
    path = reverse("plans:subscription-url", kwargs={"token": token})
    return settings.PLANS_SUBSCRIPTION_URL_BASE.rstrip("/") + path
