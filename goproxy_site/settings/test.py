"""Test settings: fast hashing, in-memory mail; DBs from the environment, SQLite by default."""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import env

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
