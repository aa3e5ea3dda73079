"""Proxy secrets: generation, the keyed hash that stores them, and the sealed form a new
secret takes while it waits in the session for the one page that shows it.

Secrets are 256-bit random tokens, so a keyed HMAC-SHA256 is as strong as a slow
password hash here and verifies in about a microsecond (it runs on every proxy auth).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

SECRET_BYTES = 32  # 43 URL-safe characters


def secret_generate() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str, *, key: str | None = None) -> str:
    key_bytes = (key or settings.PROXY_CREDENTIAL_HASH_KEY).encode()
    return hmac.new(key_bytes, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str, *, key: str | None = None) -> bool:
    return hmac.compare_digest(secret_hash(secret, key=key), stored_hash)


def _session_box() -> Fernet:
    # A key of its own, derived from SECRET_KEY: sessions are signed, not encrypted, and a
    # database dump must not hold secrets that were issued but not yet shown.
    key = hashlib.sha256(f"goproxy-issued-secret:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def secret_seal(secret: str) -> str:
    """The secret encrypted (and authenticated) for a short stay in the session."""
    return _session_box().encrypt(secret.encode()).decode()


def secret_unseal(sealed: str) -> str | None:
    """The sealed secret, or None if it was not sealed here (or SECRET_KEY changed)."""
    try:
        return _session_box().decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None
