"""Reads on the accounts DB."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Lower

from plans import selectors as plan_selectors

from .crypto import secret_hash
from .models import ProxyCredential, User

# A hash no real secret maps to, so unknown logins cost the same work as known ones.
_DUMMY_HASH = "0" * 64


# Users a search term may match before plans-side lists ask for a narrower term (the ids
# go into one `user_id IN (...)` on the plans DB).
USER_SEARCH_LIMIT = 1000


@dataclass(frozen=True)
class UserSummary:
    """What a plans-side page shows of a user: enough to name and link them."""

    id: int
    username: str
    email: str
    is_active: bool

    @property
    def label(self) -> str:
        return self.email or self.username


def user_get(*, user_id: int) -> User | None:
    return User.objects.filter(pk=user_id).first()


def user_ids_existing(*, user_ids: Iterable[int]) -> set[int]:
    """Which of `user_ids` are users (the plan-controller's check on traffic deltas)."""
    ids = list(user_ids)
    found: set[int] = set()
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        found.update(User.objects.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def users_by_id(*, user_ids: Iterable[int]) -> dict[int, UserSummary]:
    """Summaries of many users in one accounts-DB query, keyed by id (missing ids absent).

    Plans rows hold `user_id` only; a page of them asks here once for all its users
    instead of once per row, and never joins across the two databases.
    """
    ids = {int(i) for i in user_ids}
    if not ids:
        return {}
    rows = User.objects.filter(pk__in=ids).values_list("pk", "username", "email", "is_active")
    return {pk: UserSummary(pk, username, email, active) for pk, username, email, active in rows}


def user_ids_matching(*, term: str, limit: int = USER_SEARCH_LIMIT) -> list[int]:
    """Ids of users whose username or e-mail contains `term` (case-insensitive), at most
    `limit` + 1 of them, so a caller can tell that the term matched too many."""
    term = term.strip()
    if not term:
        return []
    qs = User.objects.filter(Q(username__icontains=term) | Q(email__icontains=term))
    return list(qs.order_by("pk").values_list("pk", flat=True)[: limit + 1])


def _verified_own_addresses() -> QuerySet[EmailAddress]:
    # The user's own address is User.email; an extra or pending one does not count.
    return (
        EmailAddress.objects.filter(primary=True, verified=True)
        .alias(address=Lower("email"), own=Lower("user__email"))
        .filter(address=F("own"))
    )


def user_email_verified(*, user_id: int) -> bool:
    """Whether the user's e-mail address is verified: through the link mailed to it, by
    Google at sign-in, or by an operator in the admin.

    Claiming the free plan, buying and issuing proxy credentials need it
    (accounts.guards.require_verified_email).
    """
    return _verified_own_addresses().filter(user_id=user_id).exists()


def user_ids_email_verified(*, user_ids: Iterable[int]) -> set[int]:
    """Which of these users have a verified e-mail address (one query for a page)."""
    return set(
        _verified_own_addresses()
        .filter(user_id__in=list(user_ids))
        .values_list("user_id", flat=True)
    )


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
    return User.objects.aggregate(
        total=Count("pk"),
        active=Count("pk", filter=Q(is_active=True)),
        staff=Count("pk", filter=Q(is_staff=True)),
    )


def user_list(
    *,
    search: str = "",
    is_active: bool | None = None,
    plan_id: int | None = None,
    status: str | None = None,
) -> QuerySet[User]:
    """Users ordered by id, filtered by username/e-mail search, activity and subscription.

    `plan_id` and `status` ask the plans DB for user ids first (no cross-DB join);
    status "none" means no current subscription.
    """
    qs = User.objects.order_by("pk")
    if search:
        qs = qs.filter(Q(username__icontains=search) | Q(email__icontains=search))
    if is_active is not None:
        qs = qs.filter(is_active=is_active)
    if plan_id is not None:
        qs = qs.filter(pk__in=plan_selectors.user_ids_on_plan(plan_id=plan_id))
    if status == "none":
        qs = qs.exclude(pk__in=plan_selectors.user_ids_with_current_subscription())
    elif status:
        qs = qs.filter(pk__in=plan_selectors.user_ids_with_status(statuses=[status]))
    return qs


def user_username_taken(*, username: str, exclude_pk: int | None = None) -> bool:
    """Whether another user has this username, compared case-insensitively."""
    qs = User.objects.filter(username__iexact=username)
    return qs.exclude(pk=exclude_pk).exists() if exclude_pk else qs.exists()


def user_email_taken(*, email: str, exclude_pk: int | None = None) -> bool:
    qs = User.objects.filter(email__iexact=User.objects.normalize_email(email).strip())
    return qs.exclude(pk=exclude_pk).exists() if exclude_pk else qs.exists()


def credential_login_taken(*, login: str) -> bool:
    return ProxyCredential.objects.filter(login=login).exists()


def user_get_by_username(*, username: str) -> User | None:
    return User.objects.filter(username=username).first()
