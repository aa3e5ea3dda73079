"""Base settings: every value is read here through django-environ; the other modules only override.

https://docs.djangoproject.com/en/5.2/ref/settings/
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
env.read_env(str(BASE_DIR / ".env"), overwrite=False)

# GENERAL
# ------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-insecure-change-me-" + "x" * 32)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True
SITE_NAME = env("SITE_NAME", default="goproxy")
# Public URL of the web portal, used in e-mails and printed by `make run`.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

# DATABASES
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/topics/db/multi-db/
# `default` holds auth/admin/sessions/accounts; `plans` holds the plans app only.
DATABASES = {
    "default": env.db("ACCOUNTS_DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'accounts.sqlite3'}"),
    "plans": env.db("PLANS_DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'plans.sqlite3'}"),
}
for _db in DATABASES.values():
    _db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        # WAL and a busy timeout let web, proxy and worker share the SQLite files.
        # Write transactions take the write lock at BEGIN (IMMEDIATE): a deferred one that
        # read first and then writes cannot wait for the lock (SQLite answers "database
        # is locked" at once instead of honouring the timeout), which made concurrent
        # requests fail with 500.
        # https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-transaction-behavior
        _db.setdefault("OPTIONS", {}).update(
            {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;",
            }
        )
DATABASE_ROUTERS = ["goproxy_site.db_routers.PlansRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# APPS
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    # django.contrib.admin with the operators' site as admin.site:
    # https://docs.djangoproject.com/en/5.2/ref/contrib/admin/#overriding-the-default-admin-site
    "goproxy_site.apps.GoproxyAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "goproxy_site",
    "accounts",
    "plans",
    "proxy_daemon",
    # Signup, login, e-mail verification, password reset, rate limits, Google sign-in and
    # operators' TOTP: https://docs.allauth.org/en/latest/installation/quickstart.html
    # After the project's apps, so the portal's templates/ override allauth's.
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "allauth.mfa",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "goproxy_site.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.AdminAccessMiddleware",
    "accounts.middleware.SocialAppMissingMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "goproxy_site.urls"
WSGI_APPLICATION = "goproxy_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.portal",
            ],
        },
    },
]

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [d for d in [BASE_DIR / "static"] if d.exists()]

# AUTHENTICATION
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/topics/auth/customizing/#substituting-a-custom-user-model
AUTH_USER_MODEL = "accounts.User"
# ModelBackend keeps username logins for Django's own callers (tests, `createsuperuser`);
# people log in through allauth's backend, by e-mail.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Key for the keyed hash (HMAC-SHA256) of issued proxy secrets. Changing it invalidates
# every issued credential, so it is separate from SECRET_KEY.
PROXY_CREDENTIAL_HASH_KEY = env("PROXY_CREDENTIAL_HASH_KEY", default=SECRET_KEY)
# Shown to people whose account an operator disabled ("contact support at ...").
SUPPORT_EMAIL = env("SUPPORT_EMAIL", default="support@localhost")

# ALLAUTH
# ------------------------------------------------------------------------------
# https://docs.allauth.org/en/latest/account/configuration.html
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_FORMS = {
    "login": "accounts.forms.LoginForm",
    "signup": "accounts.forms.SignupForm",
    "reset_password": "accounts.forms.ResetPasswordForm",
}
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
# People may log in before verifying; claiming the free plan, buying and issuing proxy
# credentials wait for a verified address (accounts.guards.require_verified_email).
ACCOUNT_EMAIL_VERIFICATION = "optional"
# The link opens a page with a button, so mail scanners that follow links verify nothing.
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = 3
# One address per account; a new one replaces it once verified.
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_SESSION_REMEMBER = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# No mail to addresses without an account: a reset request cannot make the site write to
# strangers.
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{SITE_NAME}] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SITE_URL.startswith("https:") else "http"
# https://docs.allauth.org/en/latest/account/rate_limits.html
# Counters live in the default cache: with several web processes, CACHE_URL must point at
# Redis for one shared count. "key" is the e-mail address (login, reset, verification).
ACCOUNT_RATE_LIMITS = {
    "login": env("PORTAL_RATE_LIMIT_LOGIN", default="30/m/ip"),
    "login_failed": env("PORTAL_RATE_LIMIT_LOGIN_FAILED", default="10/m/ip,5/5m/key"),
    "signup": env("PORTAL_RATE_LIMIT_SIGNUP", default="10/h/ip"),
    "confirm_email": env("PORTAL_RATE_LIMIT_VERIFY_EMAIL", default="1/3m/key,10/h/ip"),
    "reset_password": env("PORTAL_RATE_LIMIT_PASSWORD_RESET", default="10/h/ip,3/h/key"),
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "reauthenticate": "10/m/user",
}
# Behind reverse proxies the client address is the n-th from the right in X-Forwarded-For.
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("API_NUM_PROXIES", default=0)
# Google sign-in (https://docs.allauth.org/en/latest/socialaccount/providers/google.html):
# on when both values are set. Google vouches for the addresses it calls verified, so
# those count as verified here and sign in to the account that has them.
GOOGLE_OAUTH_CLIENT_ID = env("GOOGLE_OAUTH_CLIENT_ID", default="")
GOOGLE_OAUTH_CLIENT_SECRET = env("GOOGLE_OAUTH_CLIENT_SECRET", default="")
SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, Any]] = {
    "google": {
        "SCOPE": ["openid", "email", "profile"],
        "AUTH_PARAMS": {"prompt": "select_account"},
        "OAUTH_PKCE_ENABLED": True,
        "APPS": (
            [{"client_id": GOOGLE_OAUTH_CLIENT_ID, "secret": GOOGLE_OAUTH_CLIENT_SECRET}]
            if GOOGLE_OAUTH_CLIENT_ID and GOOGLE_OAUTH_CLIENT_SECRET
            else []
        ),
    }
}
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10
# Operators' two-factor authentication: TOTP apps plus single-use recovery codes
# (https://docs.allauth.org/en/latest/mfa/configuration.html). With ADMIN_REQUIRE_2FA
# the admin admits only staff whose session passed a TOTP or recovery-code check.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = SITE_NAME
ADMIN_REQUIRE_2FA = env.bool("ADMIN_REQUIRE_2FA", default=False)

# CACHES
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/topics/cache/
# Per-process memory by default; several web processes share API throttle counts when
# CACHE_URL points at Redis (e.g. redis://127.0.0.1:6379/1).
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# EMAIL
# ------------------------------------------------------------------------------
EMAIL_BACKEND = env(
    "DJANGO_EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="goproxy <noreply@localhost>")

# DJANGO REST FRAMEWORK
# ------------------------------------------------------------------------------
# https://www.django-rest-framework.org/api-guide/settings/
# Token auth for scripts (tokens from the admin or `manage.py create_api_token`), session
# auth (with CSRF) for the browser. Throttle counters live in the default cache, so with
# several web processes point CACHES at Redis for one shared count.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": (
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ),
    "DEFAULT_PERMISSION_CLASSES": ("rest_framework.permissions.IsAuthenticated",),
    "DEFAULT_SCHEMA_CLASS": "goproxy_site.api.schema.ApiAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "goproxy_site.api.pagination.ApiPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "goproxy_site.api.exceptions.api_exception_handler",
    "DEFAULT_PARSER_CLASSES": (
        "goproxy_site.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ),
    "DEFAULT_THROTTLE_CLASSES": (
        "goproxy_site.api.throttling.AnonThrottle",
        "goproxy_site.api.throttling.UserThrottle",
    ),
    # https://www.django-rest-framework.org/api-guide/throttling/#setting-the-throttling-policy
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", default="60/minute"),
        "user": env("API_THROTTLE_USER", default="1200/minute"),
    },
    # Behind a reverse proxy set this to the number of proxies, or every anonymous client
    # shares the proxy's address for throttling.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=None),
}
# Unrevoked proxy credentials one user may hold (POST me/credentials/ refuses beyond it).
API_MAX_LIVE_CREDENTIALS = env.int("API_MAX_LIVE_CREDENTIALS", default=10)
SPECTACULAR_SETTINGS = {
    "TITLE": "goproxy API",
    "DESCRIPTION": "Users, plans, subscriptions, usage and proxy credentials.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# PROXY
# ------------------------------------------------------------------------------
PROXY_HOST = env("PROXY_HOST", default="0.0.0.0")
PROXY_PORT = env.int("PROXY_PORT", default=8888)
# Host name clients use to reach the proxy (shown in the portal and by `make run`).
PROXY_PUBLIC_HOST = env("PROXY_PUBLIC_HOST", default="127.0.0.1")
# Refuse loopback/private/link-local destinations unless this is on (development, tests).
PROXY_ALLOW_PRIVATE_DESTINATIONS = env.bool("PROXY_ALLOW_PRIVATE_DESTINATIONS", default=False)
PROXY_ALLOWED_CONNECT_PORTS = env.list("PROXY_ALLOWED_CONNECT_PORTS", cast=int, default=[443])
# Seconds a successful credential check stays cached (key derived from the supplied secret).
PROXY_AUTH_CACHE_TTL = env.float("PROXY_AUTH_CACHE_TTL", default=30.0)
# Seconds between hand-overs of per-user byte counts to the reporter.
PROXY_METER_INTERVAL = env.float("PROXY_METER_INTERVAL", default=1.0)
# Dotted path of the proxy_daemon.hooks.Reporter class (constructed with no arguments).
PROXY_REPORTER = env("PROXY_REPORTER", default="proxy_daemon.reporters.local.MemoryReporter")
# File that proxy_daemon.reporters.local.FileReporter appends JSON lines to (tests, debugging).
PROXY_METER_FILE = env("PROXY_METER_FILE", default=str(VAR_DIR / "proxy-meter.jsonl"))
# Dotted paths of proxy_daemon.hooks.ControlPlugin classes loaded by runproxy.
PROXY_CONTROL_PLUGINS = env.list("PROXY_CONTROL_PLUGINS", default=[])
# Limits that protect the daemon (slowloris, giant headers, floods); seconds and bytes.
PROXY_MAX_CONNECTIONS = env.int("PROXY_MAX_CONNECTIONS", default=10_000)
PROXY_MAX_HEADER_BYTES = env.int("PROXY_MAX_HEADER_BYTES", default=32 * 1024)
PROXY_MAX_HEADER_COUNT = env.int("PROXY_MAX_HEADER_COUNT", default=100)
PROXY_HEADER_TIMEOUT = env.float("PROXY_HEADER_TIMEOUT", default=10.0)
PROXY_KEEPALIVE_TIMEOUT = env.float("PROXY_KEEPALIVE_TIMEOUT", default=60.0)
PROXY_BODY_TIMEOUT = env.float("PROXY_BODY_TIMEOUT", default=30.0)
PROXY_CONNECT_TIMEOUT = env.float("PROXY_CONNECT_TIMEOUT", default=10.0)
PROXY_UPSTREAM_TIMEOUT = env.float("PROXY_UPSTREAM_TIMEOUT", default=60.0)
PROXY_TUNNEL_IDLE_TIMEOUT = env.float("PROXY_TUNNEL_IDLE_TIMEOUT", default=300.0)
PROXY_DRAIN_TIMEOUT = env.float("PROXY_DRAIN_TIMEOUT", default=30.0)
# Relay buffers are 1 MiB, borrowed from a bounded pool only while data flows.
PROXY_RELAY_BUFFER_BYTES = env.int("PROXY_RELAY_BUFFER_BYTES", default=1024 * 1024)
PROXY_RELAY_BUFFER_POOL = env.int("PROXY_RELAY_BUFFER_POOL", default=64)
# Idle keep-alive connections kept per origin; below the client concurrency, every release
# past the cap closes a connection the next request must reopen (bench/RESULTS.md).
PROXY_UPSTREAM_POOL_PER_HOST = env.int("PROXY_UPSTREAM_POOL_PER_HOST", default=512)
PROXY_UPSTREAM_POOL_IDLE = env.float("PROXY_UPSTREAM_POOL_IDLE", default=30.0)
# Failed proxy logins per client IP within the window before answering 429.
PROXY_AUTH_FAIL_LIMIT = env.int("PROXY_AUTH_FAIL_LIMIT", default=20)
PROXY_AUTH_FAIL_WINDOW = env.float("PROXY_AUTH_FAIL_WINDOW", default=60.0)
# Seconds a user's plan limits (speed, connections) stay cached.
PROXY_USER_LIMITS_TTL = env.float("PROXY_USER_LIMITS_TTL", default=30.0)
# Native threads for ORM lookups, so DB access never stalls the gevent hub.
PROXY_DB_THREADS = env.int("PROXY_DB_THREADS", default=4)
PROXY_VIA_NAME = env("PROXY_VIA_NAME", default="goproxy")
# Admin port with /healthz and /metrics (Prometheus); off unless a port is given, and on
# loopback unless PROXY_ADMIN_HOST is widened (compose: 0.0.0.0 on the internal network).
PROXY_ADMIN_HOST = env("PROXY_ADMIN_HOST", default="127.0.0.1")
PROXY_ADMIN_PORT = env.int("PROXY_ADMIN_PORT", default=None)

# KAFKA
# ------------------------------------------------------------------------------
# https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092")
# Traffic deltas, proxy -> plan-controller (consumer group KAFKA_CONSUMER_GROUP).
KAFKA_TOPIC_TRAFFIC = env("KAFKA_TOPIC_TRAFFIC", default="goproxy.traffic")
# Restrictions, plan changes, revocations -> every proxy instance (one group each).
KAFKA_TOPIC_CONTROL = env("KAFKA_TOPIC_CONTROL", default="goproxy.control")
KAFKA_TOPIC_DEAD_LETTER = env("KAFKA_TOPIC_DEAD_LETTER", default="goproxy.dead-letter")
# Partitions for topics created at start-up; keys are user ids, so any count keeps order.
KAFKA_TOPIC_PARTITIONS = env.int("KAFKA_TOPIC_PARTITIONS", default=6)
KAFKA_CONSUMER_GROUP = env("KAFKA_CONSUMER_GROUP", default="plan-controller")
# tansu answers the first JoinGroup of a group only after session.timeout.ms/2.
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=10000)
# Extra librdkafka properties, e.g. KAFKA_PRODUCER_CONFIG="compression.type=lz4".
KAFKA_PRODUCER_CONFIG = env.dict("KAFKA_PRODUCER_CONFIG", default={})
KAFKA_CONSUMER_CONFIG = env.dict("KAFKA_CONSUMER_CONFIG", default={})
# The plan-controller consumer runs as a bootstep inside `celery worker` when on.
KAFKA_PLAN_CONTROLLER_ENABLED = env.bool("KAFKA_PLAN_CONTROLLER_ENABLED", default=True)
# Messages per batch the plan-controller starts with; while it is behind (a batch comes
# back full) each batch doubles, up to the maximum, and it falls back once caught up.
KAFKA_CONSUMER_BATCH_SIZE = env.int("KAFKA_CONSUMER_BATCH_SIZE", default=500)
KAFKA_CONSUMER_MAX_BATCH_SIZE = env.int("KAFKA_CONSUMER_MAX_BATCH_SIZE", default=20000)
# Seconds a consume waits for a batch to fill before taking what has arrived: the delay a
# delta (and so a cut) can wait in a quiet worker.
KAFKA_CONSUMER_POLL_TIMEOUT = env.float("KAFKA_CONSUMER_POLL_TIMEOUT", default=0.05)
# Seconds between outbox scans in the worker (a relay also runs after every batch).
KAFKA_OUTBOX_RELAY_INTERVAL = env.float("KAFKA_OUTBOX_RELAY_INTERVAL", default=0.5)
# Proxy reporter: unacknowledged messages kept in librdkafka before deltas are coalesced
# in memory per user, and the file holding undelivered deltas across restarts.
KAFKA_REPORTER_MAX_IN_FLIGHT = env.int("KAFKA_REPORTER_MAX_IN_FLIGHT", default=10000)
KAFKA_REPORTER_SPOOL_DIR = env("KAFKA_REPORTER_SPOOL_DIR", default=str(VAR_DIR / "spool"))
# Days a proxy instance's sequence high-water marks are kept (longer than topic retention).
KAFKA_SEQUENCE_RETENTION_DAYS = env.int("KAFKA_SEQUENCE_RETENTION_DAYS", default=14)
# Seconds between consumer-lag computations in the worker (committed offset vs high
# watermark, two broker round trips per partition).
KAFKA_LAG_INTERVAL = env.float("KAFKA_LAG_INTERVAL", default=10.0)
# Seconds between a worker's heartbeats in the plans DB (its lag, for the admin index
# and the web's /healthz, which says "degraded" past PLANS_MAX_LAG_SECONDS).
KAFKA_HEARTBEAT_INTERVAL = env.float("KAFKA_HEARTBEAT_INTERVAL", default=5.0)

# CELERY
# ------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
# RabbitMQ here and in CI; `make run` without a server can use kombu's filesystem
# transport: CELERY_BROKER_URL=filesystem:// (folders from CELERY_FILESYSTEM_DIR).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
CELERY_FILESYSTEM_DIR = env("CELERY_FILESYSTEM_DIR", default=str(VAR_DIR / "celery"))
CELERY_FILESYSTEM_TRANSPORT_OPTIONS = {
    "data_folder_in": f"{CELERY_FILESYSTEM_DIR}/queue",
    "data_folder_out": f"{CELERY_FILESYSTEM_DIR}/queue",
    "processed_folder": f"{CELERY_FILESYSTEM_DIR}/processed",
    "control_folder": f"{CELERY_FILESYSTEM_DIR}/control",
    "store_processed": False,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = CELERY_FILESYSTEM_TRANSPORT_OPTIONS
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_BACKEND = None
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Beat: the expiry sweep makes idle users expire on time; the outbox relay backs up the
# worker's relay loop; old sequence marks are pruned daily.
CELERY_BEAT_SCHEDULE = {
    "subscription-expire-due": {
        "task": "plans.tasks.subscription_expire_due_task",
        "schedule": env.float("CELERY_EXPIRY_SWEEP_INTERVAL", default=30.0),
    },
    "outbox-relay": {
        "task": "plans.tasks.outbox_relay_task",
        "schedule": env.float("CELERY_OUTBOX_RELAY_INTERVAL", default=10.0),
    },
    "traffic-sequences-prune": {
        "task": "plans.tasks.traffic_sequences_prune_task",
        "schedule": 86400.0,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = env(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule")
)
# Worker metrics (prometheus_client.start_http_server, main process): off unless a port
# is given; several workers on one host each need their own port.
# https://prometheus.github.io/client_python/exporting/http/
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=None)
WORKER_METRICS_ADDR = env("WORKER_METRICS_ADDR", default="127.0.0.1")

# METRICS
# ------------------------------------------------------------------------------
# The web's /metrics answers staff sessions and requests with this bearer token (what
# Prometheus sends with `authorization: {credentials: ...}`); empty: staff only.
# https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config
WEB_METRICS_TOKEN = env("WEB_METRICS_TOKEN", default="")

# LOGGING
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/topics/logging/
# LOG_FORMAT=json: one JSON object per line (production); plain: human-readable.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "goproxy_site.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "goproxy_site.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT if LOG_FORMAT in ("plain", "json") else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# PORTAL
# ------------------------------------------------------------------------------
# Destination shown in the portal's ready-to-paste `curl -x <proxy URL> <this>` line.
PORTAL_CURL_EXAMPLE_URL = env("PORTAL_CURL_EXAMPLE_URL", default="https://example.com/")
# Days shown in the dashboard's usage chart and the admin user page.
PORTAL_USAGE_CHART_DAYS = env.int("PORTAL_USAGE_CHART_DAYS", default=30)

# PLANS
# ------------------------------------------------------------------------------
# Traffic deltas stamped further ahead of the worker's clock than this are refused
# (dead-lettered): a proxy with a wrong clock must not bill a future period.
PLANS_TRAFFIC_MAX_SKEW_SECONDS = env.float("PLANS_TRAFFIC_MAX_SKEW_SECONDS", default=300.0)
# Quota grants: how long a proxy may spend a grant after receiving it (it asks again well
# before), the grace after which a silent proxy's grant returns to the pool, the largest
# grant, and bytes the proxies together may forward past a limit (0: none).
PLANS_GRANT_VALIDITY_SECONDS = env.float("PLANS_GRANT_VALIDITY_SECONDS", default=10.0)
PLANS_GRANT_GRACE_SECONDS = env.float("PLANS_GRANT_GRACE_SECONDS", default=2.0)
PLANS_GRANT_MAX_BYTES = env.int("PLANS_GRANT_MAX_BYTES", default=1 << 30)
PLANS_GRANT_TOLERANCE_BYTES = env.int("PLANS_GRANT_TOLERANCE_BYTES", default=0)
# The plan-controller is "degraded" (web /healthz, admin index) when its oldest
# unapplied delta is older than this many seconds, or no worker reported for a minute.
PLANS_MAX_LAG_SECONDS = env.float("PLANS_MAX_LAG_SECONDS", default=30.0)
# Time zone of calendar reset cycles (daily/weekly/monthly boundaries at local midnight).
PLANS_TIME_ZONE = env("PLANS_TIME_ZONE", default="UTC")
# Notifications, each sent once per period: percentages of the quota, and days before
# expiry (only the nearest applicable reminder is sent). An expiry reminder falls in the
# second half of a plan's term: terms too short for any day reminder (a 1-day plan) are
# reminded the given hours before their end instead.
PLANS_NOTIFY_QUOTA_PERCENTS = env.list("PLANS_NOTIFY_QUOTA_PERCENTS", cast=int, default=[80, 100])
PLANS_NOTIFY_EXPIRY_DAYS = env.list("PLANS_NOTIFY_EXPIRY_DAYS", cast=int, default=[3, 1])
PLANS_NOTIFY_EXPIRY_HOURS = env.list("PLANS_NOTIFY_EXPIRY_HOURS", cast=int, default=[2])
PLANS_NOTIFY_EMAIL = env.bool("PLANS_NOTIFY_EMAIL", default=True)
# Webhooks (endpoints are configured in the admin): seconds per attempt, attempts before
# a delivery is marked failed, and the first retry delay (doubling, capped at 1 h).
PLANS_WEBHOOK_TIMEOUT = env.float("PLANS_WEBHOOK_TIMEOUT", default=5.0)
PLANS_WEBHOOK_MAX_ATTEMPTS = env.int("PLANS_WEBHOOK_MAX_ATTEMPTS", default=6)
PLANS_WEBHOOK_RETRY_DELAY = env.float("PLANS_WEBHOOK_RETRY_DELAY", default=10.0)
# Device limit: distinct client IPs of one user seen within this many seconds count as
# "in use at once". State is shared by every proxy instance through this Redis URL; empty
# disables the check (a single-instance development proxy without Redis).
PLANS_DEVICE_WINDOW_SECONDS = env.float("PLANS_DEVICE_WINDOW_SECONDS", default=300.0)
PLANS_DEVICE_REDIS_URL = env("PLANS_DEVICE_REDIS_URL", default="redis://127.0.0.1:6379/2")
# Seconds a proxy trusts a (user, IP) admission before asking Redis again.
PLANS_DEVICE_CACHE_SECONDS = env.float("PLANS_DEVICE_CACHE_SECONDS", default=5.0)
# Key of the keyed hash (HMAC-SHA256) of the normalised e-mail kept on each free-plan
# claim, so one address claims once even after its account is deleted, and no address
# is kept in clear. Changing it forgets every earlier claim's address.
PLANS_FREE_CLAIM_HASH_KEY = env("PLANS_FREE_CLAIM_HASH_KEY", default=SECRET_KEY)
# Base of the private subscription URLs client apps poll (defaults to SITE_URL).
PLANS_SUBSCRIPTION_URL_BASE = env("PLANS_SUBSCRIPTION_URL_BASE", default=SITE_URL)
# Seconds between lifecycle sweeps (cycle resets, on-hold deadlines, expiry reminders).
PLANS_LIFECYCLE_INTERVAL = env.float("PLANS_LIFECYCLE_INTERVAL", default=30.0)
CELERY_BEAT_SCHEDULE["plans-lifecycle-tick"] = {
    "task": "plans.tasks.lifecycle_tick_task",
    "schedule": PLANS_LIFECYCLE_INTERVAL,
}
