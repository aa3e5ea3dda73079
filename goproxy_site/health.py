"""`/healthz`: the web process can reach both databases and both brokers (else 503), and
the plan-controller keeps up (else "degraded", still 200: the web itself serves)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

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
