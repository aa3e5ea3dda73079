"""Reads on the accounts DB."""

from __future__ import annotations

import hmac

from django.db.models import QuerySet

from .crypto import secret_hash
from .models import ProxyCredential, User

# A hash no real secret maps to, so unknown logins cost the same work as known ones.
_DUMMY_HASH = "0" * 64


def user_get(*, user_id: int) -> User | None:
    return User.objects.filter(pk=user_id).first()


def user_get_by_email(*, email: str) -> User | None:
    return User.objects.filter(email__iexact=email.strip()).first()


def credential_list(*, user: User, include_revoked: bool = True) -> QuerySet[ProxyCredential]:
    qs = ProxyCredential.objects.filter(user=user)
    if not include_revoked:
        qs = qs.filter(revoked_at__isnull=True)
    return qs


def credential_authenticate(*, login: str, secret: str) -> ProxyCredential | None:
    """The usable credential for login + secret, or None.

    Revoked credentials and inactive users never authenticate. The hash is computed
    whether or not the login exists, and compared in constant time.
    """
    credential = (
        ProxyCredential.objects.select_related("user")
        .filter(login=login, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    supplied = secret_hash(secret)
    stored = credential.secret_hash if credential else _DUMMY_HASH
    if hmac.compare_digest(supplied, stored) and credential is not None:
        return credential
    return None


def user_counts() -> dict[str, int]:
    """Totals for the operator dashboard: all users, active ones and staff."""
    from django.db.models import Count, Q

    return User.objects.aggregate(
        total=Count("pk"),
        active=Count("pk", filter=Q(is_active=True)),
        staff=Count("pk", filter=Q(is_staff=True)),
    )
