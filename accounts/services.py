"""Writes on the accounts DB: users and proxy credentials.

Services that also change the plans DB (deactivation) call plans services; there is no
cross-database transaction, so each side is atomic on its own database and the order
is chosen so a failure leaves the user locked out rather than loose.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from goproxy_site.db_routers import ACCOUNTS_DB
from goproxy_site.events import schemas
from goproxy_site.outbox import outbox_add
from plans.services import subscription_disable_current

from . import selectors
from .crypto import secret_generate, secret_hash
from .models import LOGIN_PATTERN, OutboxEvent, ProxyCredential, User

LOGIN_SUFFIX_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"
LOGIN_RULE = "A proxy login is 3-64 characters: lowercase letters, digits, '.', '_' or '-'."


@dataclass(frozen=True)
class IssuedCredential:
    """A credential together with its secret, which exists in clear only here."""

    credential: ProxyCredential
    secret: str


def user_create(
    *,
    username: str,
    email: str,
    password: str | None = None,
    first_name: str = "",
    last_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    email_verified: bool = False,
) -> User:
    """Create a user (operators, the API, seeding); e-mail is normalised and unique
    case-insensitively. Without a password the user cannot log in to the portal.

    The address is recorded for allauth as the user's one address, unverified unless
    the operator vouches for it (`email_verified`); portal signups go through allauth.
    """
    user = User(
        username=username,
        email=User.objects.normalize_email(email).strip(),
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    if selectors.user_email_taken(email=user.email):
        raise ValidationError(
            {"email": "A user with this e-mail address already exists."}, code="duplicate"
        )
    user.full_clean(exclude=["password"])
    with transaction.atomic(using=ACCOUNTS_DB):
        user.save()
        email_address_set(user=user, verified=email_verified)
    return user


def email_address_set(*, user: User, verified: bool) -> EmailAddress:
    """Make User.email the user's one allauth address (primary), verified or not.

    Other addresses of the user (an old one, a pending change) are dropped, as allauth's
    change-email flow drops them once the new address is verified.
    """
    email = user.email.lower()
    with transaction.atomic(using=ACCOUNTS_DB):
        EmailAddress.objects.filter(user=user).exclude(email=email).delete()
        address, _ = EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"primary": True, "verified": verified}
        )
    return address


def email_mark_verified(*, user: User) -> bool:
    """An operator vouches for the user's address; False if it was verified already.

    A pending change to another address stays pending (it still needs its own link).
    """
    if not user.email:
        raise ValidationError("This user has no e-mail address to verify.")
    if selectors.user_email_verified(user_id=user.pk):
        return False
    email = user.email.lower()
    with transaction.atomic(using=ACCOUNTS_DB):
        EmailAddress.objects.filter(user=user, primary=True).exclude(email=email).update(
            primary=False
        )
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"primary": True, "verified": True}
        )
    return True


def email_verification_send(*, user: User, request: HttpRequest) -> EmailAddress:
    """Mail the user a fresh link that verifies their address (rate limits are the
    caller's: the portal's resend view checks allauth's)."""
    email = user.email.lower()
    address = EmailAddress.objects.filter(user=user, email=email).first()
    if address is None:
        address = email_address_set(user=user, verified=False)
    address.send_confirmation(request)
    return address


def user_deactivate(*, user: User, by: str = "") -> User:
    """Deactivate a user: no web login, every credential revoked, subscription disabled.

    `by` names the operator in the subscription's history ("by op")."""
    with transaction.atomic(using=ACCOUNTS_DB):
        user.is_active = False
        user.save(update_fields=["is_active"])
        credential_revoke_all(user=user)
        outbox_add(model=OutboxEvent, event=schemas.UserDeactivated(user_id=user.pk))
    subscription_disable_current(user_id=user.pk, reason="user deactivated", by=by)
    return user


def _login_suggest(user: User) -> str:
    # Portal usernames are e-mail addresses: base the login on the local part only.
    name = user.username.split("@", 1)[0]
    base = re.sub(r"[^a-z0-9._-]", "", name.lower())[:50] or "user"
    if len(base) < 3:
        base = f"{base}-px"
    suffix = "".join(secrets.choice(LOGIN_SUFFIX_CHARS) for _ in range(6))
    return f"{base}-{suffix}"


def credential_issue(*, user: User, login: str | None = None) -> IssuedCredential:
    """Issue a new proxy credential; the returned secret is never stored in clear."""
    if not user.is_active:
        raise ValidationError("Credentials can only be issued to active users.")
    chosen = (login or _login_suggest(user)).strip()
    if not re.fullmatch(LOGIN_PATTERN, chosen):
        raise ValidationError({"login": LOGIN_RULE})
    if selectors.credential_login_taken(login=chosen):
        raise ValidationError({"login": "This proxy login is already taken."}, code="duplicate")
    secret = secret_generate()
    credential = ProxyCredential(user=user, login=chosen, secret_hash=secret_hash(secret))
    credential.full_clean(exclude=["user"])
    try:
        with transaction.atomic(using=ACCOUNTS_DB):
            credential.save()
    except IntegrityError as exc:
        raise ValidationError(
            {"login": "This proxy login is already taken."}, code="duplicate"
        ) from exc
    return IssuedCredential(credential=credential, secret=secret)


def credential_rotate(*, credential: ProxyCredential) -> IssuedCredential:
    """Replace a credential's secret; the old secret stops working at once."""
    if credential.is_revoked:
        raise ValidationError("A revoked credential cannot be rotated.")
    secret = secret_generate()
    with transaction.atomic(using=ACCOUNTS_DB):
        credential.secret_hash = secret_hash(secret)
        credential.save(update_fields=["secret_hash"])
        # Proxies drop the old secret from their auth caches at once.
        outbox_add(
            model=OutboxEvent,
            event=schemas.ProxyCredentialRevoked(
                user_id=credential.user_id, login=credential.login
            ),
        )
    return IssuedCredential(credential=credential, secret=secret)


def credential_revoke(*, credential: ProxyCredential) -> ProxyCredential:
    """Revoke a credential (idempotent); revoked credentials never authenticate."""
    if credential.revoked_at is None:
        with transaction.atomic(using=ACCOUNTS_DB):
            credential.revoked_at = timezone.now()
            credential.save(update_fields=["revoked_at"])
            outbox_add(
                model=OutboxEvent,
                event=schemas.ProxyCredentialRevoked(
                    user_id=credential.user_id, login=credential.login
                ),
            )
    return credential


def credential_revoke_all(*, user: User) -> int:
    """Revoke every live credential of a user; returns how many were revoked."""
    with transaction.atomic(using=ACCOUNTS_DB):
        live = ProxyCredential.objects.select_for_update().filter(
            user=user, revoked_at__isnull=True
        )
        logins = list(live.values_list("login", flat=True))
        live.update(revoked_at=timezone.now())
        for login in logins:
            outbox_add(
                model=OutboxEvent,
                event=schemas.ProxyCredentialRevoked(user_id=user.pk, login=login),
            )
        return len(logins)


LAST_USED_RESOLUTION = timedelta(minutes=1)


def credential_touch(*, credential_id: int) -> None:
    """Record that a credential was just used.

    The proxy calls this on a credential-cache miss, not per request; the conditional
    UPDATE writes at most once per LAST_USED_RESOLUTION per credential.
    """
    now = timezone.now()
    ProxyCredential.objects.filter(pk=credential_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)


def user_delete_account(*, user: User) -> None:
    """Delete a user's account at their request.

    Proxy access ends first (subscription disabled, credentials revoked), then the user
    row goes with its credentials. Plans rows keep the bare user_id as usage history.
    """
    subscription_disable_current(user_id=user.pk, reason="account deleted")
    with transaction.atomic(using=ACCOUNTS_DB):
        credential_revoke_all(user=user)
        user.delete()


# The profile fields user_update may change (the API's users/ and me/).
API_USER_FIELDS = ("username", "email", "first_name", "last_name")


def user_update(*, user: User, data: dict[str, str]) -> User:
    """Change profile fields (username, email, first/last name) and/or the password.

    The e-mail is normalised and stays unique case-insensitively. Only changed fields
    are written.
    """
    unknown = set(data) - {*API_USER_FIELDS, "password"}
    if unknown:
        raise ValueError(f"user_update got unknown fields: {sorted(unknown)}")
    changed: list[str] = []
    for field in API_USER_FIELDS:
        if field not in data:
            continue
        value = data[field]
        if field == "email":
            value = User.objects.normalize_email(value).strip()
        if getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    if data.get("password"):
        user.set_password(data["password"])
        changed.append("password")
    if not changed:
        return user
    if "email" in changed and selectors.user_email_taken(email=user.email, exclude_pk=user.pk):
        raise ValidationError({"email": "A user with this e-mail address already exists."})
    user.full_clean(exclude=["password"])
    with transaction.atomic(using=ACCOUNTS_DB):
        user.save(update_fields=changed)
        if "email" in changed:
            # Nobody has proven the new address yet.
            email_address_set(user=user, verified=False)
    return user


def api_token_issue(*, user: User, reset: bool = False) -> tuple[str, bool]:
    """The user's REST API token key, created when missing; `reset` replaces an existing one.

    Returns (key, created). Inactive users get no token (DRF refuses them anyway).
    """
    if not user.is_active:
        raise ValidationError("API tokens can only be issued to active users.")
    with transaction.atomic(using=ACCOUNTS_DB):
        if reset:
            Token.objects.filter(user=user).delete()
        token, created = Token.objects.get_or_create(user=user)
    return token.key, created


def credential_issue_within_limit(
    *, user: User, login: str | None = None, max_live: int | None = None
) -> IssuedCredential:
    """Issue a credential unless the user already holds `max_live` unrevoked ones.

    Used by the portal and the API; the limit defaults to API_MAX_LIVE_CREDENTIALS.
    """
    max_live = settings.API_MAX_LIVE_CREDENTIALS if max_live is None else max_live
    with transaction.atomic(using=ACCOUNTS_DB):
        # Lock the user row so concurrent requests cannot both pass the count.
        User.objects.select_for_update().filter(pk=user.pk).first()
        live = ProxyCredential.objects.filter(user=user, revoked_at__isnull=True).count()
        if live >= max_live:
            raise ValidationError(
                f"At most {max_live} active proxy credentials per user; revoke one first.",
                code="too_many",
            )
        return credential_issue(user=user, login=login)
