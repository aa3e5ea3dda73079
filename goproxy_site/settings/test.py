"""Test settings: fast hashing, in-memory mail; DBs from the environment, SQLite by default."""

from __future__ import annotations

import socket

from .base import *  # noqa: F403
from .base import SOCIALACCOUNT_PROVIDERS, env

SECRET_KEY = "test-secret-key-not-for-production-" + "t" * 32
PROXY_CREDENTIAL_HASH_KEY = "test-credential-hash-key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PROXY_ALLOW_PRIVATE_DESTINATIONS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Test databases get a suffix from GOPROXY_TEST_DB_SUFFIX so parallel runs never share one.
# SQLite test DBs are files (not :memory:) so end-to-end tests can share them with the
# subprocesses they start (proxy daemon, Celery worker).
_suffix = env("GOPROXY_TEST_DB_SUFFIX", default="")
for _alias, _db in DATABASES.items():  # noqa: F405
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db["TEST"] = {"NAME": str(VAR_DIR / f"test_{_alias}{_suffix}.sqlite3")}  # noqa: F405
    else:
        _db["TEST"] = {"NAME": f"test_{_db['NAME']}{_suffix}"}

# KAFKA
# ------------------------------------------------------------------------------
# tansu answers the first JoinGroup after session.timeout.ms/2: keep it short in tests.
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=3000)
KAFKA_TOPIC_PARTITIONS = env.int("KAFKA_TOPIC_PARTITIONS", default=3)
KAFKA_OUTBOX_RELAY_INTERVAL = env.float("KAFKA_OUTBOX_RELAY_INTERVAL", default=0.2)
KAFKA_REPORTER_SPOOL_DIR = env(
    "KAFKA_REPORTER_SPOOL_DIR",
    default=str(VAR_DIR / f"test_spool{_suffix}"),  # noqa: F405
)

# CELERY
# ------------------------------------------------------------------------------
# A queue per test run, so parallel runs' workers never take each other's tasks.
CELERY_TASK_DEFAULT_QUEUE = f"goproxy{_suffix}"

# GOOGLE SIGN-IN
# ------------------------------------------------------------------------------
# No network reaches Google here: tests stand in for it with a local OAuth2/OIDC server
# (goproxy_site/tests/support/google.py). allauth's Google provider reads its endpoint
# URLs once, at import, so the stand-in's port is reserved now and bound by the test.
# Sign-in itself stays off unless a test configures the app (the client id and secret).
with socket.socket() as _sock:
    _sock.bind(("127.0.0.1", 0))
    GOOGLE_STANDIN_PORT = _sock.getsockname()[1]
GOOGLE_STANDIN_URL = f"http://127.0.0.1:{GOOGLE_STANDIN_PORT}"
SOCIALACCOUNT_PROVIDERS["google"].update(
    AUTHORIZE_URL=f"{GOOGLE_STANDIN_URL}/o/oauth2/v2/auth",
    ACCESS_TOKEN_URL=f"{GOOGLE_STANDIN_URL}/token",
    IDENTITY_URL=f"{GOOGLE_STANDIN_URL}/oauth2/v2/userinfo",
    CERTS_URL=f"{GOOGLE_STANDIN_URL}/oauth2/v1/certs",
)
