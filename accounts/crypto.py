"""Proxy secrets: generation and the keyed hash that stores them.

Secrets are 256-bit random tokens, so a keyed HMAC-SHA256 is as strong as a slow
password hash here and verifies in about a microsecond (it runs on every proxy auth).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

SECRET_BYTES = 32  # 43 URL-safe characters


def secret_generate() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str, *, key: str | None = None) -> str:
    key_bytes = (key or settings.PROXY_CREDENTIAL_HASH_KEY).encode()
    return hmac.new(key_bytes, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str, *, key: str | None = None) -> bool:
    return hmac.compare_digest(secret_hash(secret, key=key), stored_hash)
