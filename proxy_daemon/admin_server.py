"""The proxy's admin port: `/healthz` (JSON) and `/metrics` (Prometheus exposition).

A small gevent WSGI server in the proxy process, off unless PROXY_ADMIN_PORT (or
`runproxy --admin-port`) is set, bound to 127.0.0.1 unless PROXY_ADMIN_HOST says
otherwise. It holds no secrets: no user ids or logins are exposed, only counts.

`ProxyCollector` turns the server's counters (metrics.ProxyMetrics) and the live state
of the registry, the reporter and the control plugins into metric families when
Prometheus scrapes (prometheus_client's "custom collector" pattern).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gevent.pool import Pool
from gevent.pywsgi import WSGIServer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .hooks import ControlPlugin, Reporter
from .server import ProxyServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

MAX_ADMIN_CONNECTIONS = 16
PREFIX = "goproxy_proxy"


def spool_usage(spool_dir: Path) -> tuple[int, int]:
    """(files, bytes) of undelivered traffic deltas spooled on this host."""
    files = size = 0
    try:
        for path in spool_dir.glob("*.jsonl"):
            try:
                size += path.stat().st_size
            except FileNotFoundError:
                continue  # claimed and dropped between the listing and the stat
            files += 1
    except OSError:
        return (0, 0)
    return (files, size)


def producer_state(reporter: Reporter) -> dict[str, object]:
    """The event producer's state for /healthz; `applicable` False for a reporter that
    keeps the deltas on this host."""
    name = type(reporter).__name__
    delivery = reporter.delivery()
    if delivery is None:
        return {"applicable": False, "connected": None, "reporter": name}
    return {
        "applicable": True,
        "connected": delivery.connected,
        "reporter": name,
        "queue": delivery.queue,
        "delivered": delivery.delivered,
    }


def health(
    *,
    listening: bool,
    connections_open: int,
    restricted_users: int,
    reporter: Reporter,
    plugins: Sequence[ControlPlugin],
) -> tuple[int, dict[str, object]]:
    """(HTTP status, JSON body) of the proxy's /healthz.

    503 when the proxy cannot serve correctly: not listening (starting or draining) or
    its restriction snapshot is not loaded (it could admit users it must refuse).
    200 "degraded" when only Kafka is away: the proxy keeps serving and keeps every byte
    (librdkafka queue, then the spool), so a load balancer must not take all proxies out
    of rotation during a broker outage; the body says what is wrong.
    """
    producer = producer_state(reporter)
    loaded = all(p.loaded for p in plugins)
    streaming = all(p.streaming for p in plugins)
    if not listening or not loaded:
        status, code = "unavailable", 503
    elif producer["connected"] is False or not streaming:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    body: dict[str, object] = {
        "status": status,
        "checks": {
            "listening": listening,
            "producer": producer,
            # Whether every control plugin applied its snapshot and follows its stream.
            "restrictions": {
                "loaded": loaded,
                "control_stream": streaming,
                "plugins": len(plugins),
                "restricted_users": restricted_users,
            },
        },
        "connections_open": connections_open,
    }
    return code, body


class ProxyCollector(Collector):
    """Builds the proxy's metric families from live state at scrape time."""

    def __init__(
        self, server: ProxyServer, reporter: Reporter, plugins: Sequence[ControlPlugin]
    ) -> None:
        self.server = server
        self.reporter = reporter
        self.plugins = list(plugins)

    def collect(self) -> Iterator[Metric]:
        server = self.server
        m = server.metrics
        yield GaugeMetricFamily(
            f"{PREFIX}_connections_open",
            "Client connections open now.",
            len(server.registry.connections),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_connections_accepted", "Client connections accepted.", m.accepted
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_users_connected",
            "Users holding at least one open connection.",
            len(server.registry.by_user),
        )
        requests = CounterMetricFamily(
            f"{PREFIX}_requests",
            "Responses sent to clients by status (upstream status, 200 for CONNECT, or the "
            "proxy's own error status).",
            labels=["status"],
        )
        for code, count in sorted(dict(m.statuses).items()):
            requests.add_metric([str(code)], count)
        yield requests
        traffic = CounterMetricFamily(
            f"{PREFIX}_bytes",
            "Billed client wire bytes handed to the reporter (in = from clients, out = to them).",
            labels=["direction"],
        )
        traffic.add_metric(["in"], m.bytes_in)
        traffic.add_metric(["out"], m.bytes_out)
        yield traffic
        auth = CounterMetricFamily(
            f"{PREFIX}_auth_failures",
            "Refused proxy logins: missing or invalid credentials, or throttled client IP.",
            labels=["reason"],
        )
        for reason in ("missing", "invalid", "throttled"):
            auth.add_metric([reason], m.auth_failures.get(reason, 0))
        yield auth
        yield CounterMetricFamily(
            f"{PREFIX}_restriction_cuts",
            "Open connections cut because their user was restricted.",
            m.restriction_cuts,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_restriction_refusals",
            "Requests refused (403) because their user is restricted.",
            m.restriction_refusals,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_restricted_users",
            "Users currently restricted.",
            len(server.registry.restricted()),
        )
        yield from self._reporter_families()
        applied = sum(p.applied for p in self.plugins)
        yield CounterMetricFamily(
            f"{PREFIX}_control_events_applied",
            "Control events (restrictions, plan changes, revocations) applied.",
            applied,
        )

    def _reporter_families(self) -> Iterator[Metric]:
        delivery = self.reporter.delivery()
        queue = GaugeMetricFamily(
            f"{PREFIX}_producer_queue",
            "Traffic events waiting: pending (summed per user, not yet produced), "
            "in_flight (in librdkafka, unacknowledged), retry (to be produced again).",
            labels=["stage"],
        )
        if delivery is None:
            yield queue
            files = size = 0
        else:
            for stage, depth in delivery.queue.items():
                queue.add_metric([stage], depth)
            yield queue
            yield GaugeMetricFamily(
                f"{PREFIX}_producer_connected",
                "1 while the event producer has a broker connection up.",
                1 if delivery.connected else 0,
            )
            yield CounterMetricFamily(
                f"{PREFIX}_events_delivered",
                "Traffic events acknowledged by Kafka.",
                delivery.delivered,
            )
            files, size = spool_usage(delivery.spool_dir)
        yield GaugeMetricFamily(
            f"{PREFIX}_spool_files", "Spool files of undelivered traffic on this host.", files
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_spool_bytes", "Bytes in spool files of undelivered traffic.", size
        )


def registry_build(
    server: ProxyServer, reporter: Reporter, plugins: Sequence[ControlPlugin]
) -> CollectorRegistry:
    """A private registry: the proxy's collector plus process metrics (CPU, RSS, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(server, reporter, plugins))
    ProcessCollector(registry=registry)
    return registry


class AdminApp:
    """WSGI app for the admin port."""

    def __init__(
        self,
        *,
        server: ProxyServer,
        reporter: Reporter,
        plugins: Sequence[ControlPlugin],
        registry: CollectorRegistry,
    ) -> None:
        self.server = server
        self.reporter = reporter
        self.plugins = list(plugins)
        self.registry = registry

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return self._reply(start_response, 405, b"only GET and HEAD\n", "text/plain")
        if path == "/healthz":
            registry = self.server.registry
            code, body = health(
                listening=self.server.listening,
                connections_open=len(registry.connections),
                restricted_users=len(registry.restricted()),
                reporter=self.reporter,
                plugins=self.plugins,
            )
            return self._reply(
                start_response, code, json.dumps(body).encode() + b"\n", "application/json"
            )
        if path == "/metrics":
            return self._reply(start_response, 200, generate_latest(self.registry), None)
        return self._reply(start_response, 404, b"not found: try /healthz or /metrics\n", None)

    def _reply(
        self, start_response: StartResponse, code: int, body: bytes, content_type: str | None
    ) -> list[bytes]:
        reasons = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}
        headers = [
            ("Content-Type", content_type or CONTENT_TYPE_LATEST),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        if code == 404:
            headers[0] = ("Content-Type", "text/plain; charset=utf-8")
        start_response(f"{code} {reasons.get(code, 'Error')}", headers)
        return [body]


def admin_server_start(host: str, port: int, app: AdminApp) -> WSGIServer:
    """Start the admin WSGI server on the gevent hub; OSError if the port is unavailable."""
    server = WSGIServer(
        (host, port), app, spawn=Pool(MAX_ADMIN_CONNECTIONS), log=None, error_log=logger
    )
    server.start()
    return server
