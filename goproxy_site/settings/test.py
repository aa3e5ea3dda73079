"""Test settings: fast hashing, in-memory mail; DBs from the environment, SQLite by default."""

from __future__ import annotations

from .base import *  # noqa: F403

SECRET_KEY = "test-secret-key-not-for-production-" + "t" * 32
PROXY_CREDENTIAL_HASH_KEY = "test-credential-hash-key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PROXY_ALLOW_PRIVATE_DESTINATIONS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
