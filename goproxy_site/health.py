"""`/healthz`: the web process can reach both databases and both brokers (else 503), and
the plan-controller keeps up (else "degraded", still 200: the web itself serves);
`/metrics`:
its Prometheus metrics, for staff and scrapers holding WEB_METRICS_TOKEN only.

The metrics name views, response codes and database timings, which the public port
should not hand to anyone: a signed-in staff user sees them in the browser, and
Prometheus sends the token as a bearer credential (`authorization: {credentials: ...}`
in its scrape config). Everyone else gets 401 (no credential) or 403 (a wrong one).
"""

from __future__ import annotations

import hmac
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django_prometheus.exports import ExportToDjangoView

from plans.selectors import controller_lag

from .db_routers import ACCOUNTS_DB, PLANS_DB

BROKER_TIMEOUT = 2.0


def _database_ok(alias: str) -> str:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means unhealthy; the message says why
        return f"error: {exc.__class__.__name__}: {exc}"
    return "ok"


def _tcp_ok(host: str, port: int) -> str:
    try:
        socket.create_connection((host, port), timeout=BROKER_TIMEOUT).close()
    except OSError as exc:
        return f"error: {host}:{port}: {exc}"
    return "ok"


def _kafka_ok() -> str:
    first = settings.KAFKA_BOOTSTRAP_SERVERS.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return _tcp_ok(host or first, int(port or 9092))


def _celery_broker_ok() -> str:
    url = urlsplit(settings.CELERY_BROKER_URL)
    if url.scheme in ("filesystem", "memory"):
        return "ok"
    return _tcp_ok(url.hostname or "127.0.0.1", url.port or 5672)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str | float | int] = {
        f"db:{ACCOUNTS_DB}": _database_ok(ACCOUNTS_DB),
        f"db:{PLANS_DB}": _database_ok(PLANS_DB),
        "kafka": _kafka_ok(),
        "celery_broker": _celery_broker_ok(),
    }
    healthy = all(v == "ok" for v in checks.values())
    status = "ok" if healthy else "unhealthy"
    if checks[f"db:{PLANS_DB}"] == "ok":
        lag = controller_lag(max_lag_seconds=settings.PLANS_MAX_LAG_SECONDS)
        checks["plan_controller"] = lag.problem or "ok"
        checks["plan_controller_lag_seconds"] = round(lag.lag_seconds, 1)
        checks["plan_controller_lag_events"] = lag.lag_events
        if lag.problem and healthy:
            status = "degraded"
    return JsonResponse({"status": status, "checks": checks}, status=200 if healthy else 503)


def _metrics_token_ok(request: HttpRequest) -> bool | None:
    """True/False for a right/wrong bearer token, None when none was sent."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    expected = settings.WEB_METRICS_TOKEN
    return bool(expected) and hmac.compare_digest(credential.strip(), expected)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token = _metrics_token_ok(request)
    if token or (request.user.is_authenticated and request.user.is_staff):
        return ExportToDjangoView(request)
    how = "log in as staff, or send Authorization: Bearer <WEB_METRICS_TOKEN>"
    if token is None and not request.user.is_authenticated:
        response = HttpResponse(
            f"Metrics need credentials: {how}.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        f"These credentials may not read metrics: {how}.\n",
        status=403,
        content_type="text/plain; charset=utf-8",
    )
