"""Production: secrets must come from the environment; HTTPS-only cookies."""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import LOGGING, env

DEBUG = False
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT
SECRET_KEY = env("DJANGO_SECRET_KEY")
PROXY_REPORTER = env("PROXY_REPORTER", default="proxy_daemon.reporters.kafka.KafkaReporter")
PROXY_CONTROL_PLUGINS = env.list(
    "PROXY_CONTROL_PLUGINS", default=["proxy_daemon.control_plugin.KafkaControlPlugin"]
)
PROXY_CREDENTIAL_HASH_KEY = env("PROXY_CREDENTIAL_HASH_KEY")
PLANS_FREE_CLAIM_HASH_KEY = env("PLANS_FREE_CLAIM_HASH_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
