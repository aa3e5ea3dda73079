"""The private subscription-URL token each user's client apps poll."""

from __future__ import annotations

import secrets

from django.db import transaction

from goproxy_site.db_routers import PLANS_DB
from plans.models import SubscriptionToken


def subscription_token_get_or_create(*, user_id: int) -> str:
    """The user's subscription-URL token, created when missing (with their first plan)."""
    with transaction.atomic(using=PLANS_DB):
        row, _ = SubscriptionToken.objects.get_or_create(
            user_id=user_id, defaults={"token": secrets.token_urlsafe(32)}
        )
    return row.token


def subscription_token_rotate(*, user_id: int) -> str:
    """Replace the user's subscription-URL token; the old URL stops working at once."""
    token = secrets.token_urlsafe(32)
    with transaction.atomic(using=PLANS_DB):
        SubscriptionToken.objects.update_or_create(user_id=user_id, defaults={"token": token})
    return token
