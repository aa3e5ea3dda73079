"""Prometheus metrics and the health report of the proxy daemon (served by admin_server).

The data path only does plain integer arithmetic on one `ProxyMetrics` object (no lock,
no label look-up per request or per chunk). `ProxyCollector` turns those numbers and the
live state of the server, the reporter and the control plugins into metric families
when Prometheus scrapes (prometheus_client's "custom collector" pattern). Byte counts
come from the meter's per-interval hand-over (`reporters.counting.CountingReporter`), so
they are exactly the billed bytes and cost nothing per chunk; they lag by at most
PROXY_METER_INTERVAL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "goproxy_proxy"


class ProxyMetrics:
    """Counters the server bumps on its hot path; read only at scrape time."""

    __slots__ = (
        "accepted",
        "auth_failures",
        "bytes_in",
        "bytes_out",
        "restriction_cuts",
        "restriction_refusals",
        "statuses",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.statuses: dict[int, int] = {}
        self.auth_failures: dict[str, int] = {}
        self.restriction_cuts = 0
        self.restriction_refusals = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def status(self, code: int) -> None:
        """One response (final status) sent to a client, or one refusal."""
        statuses = self.statuses
        statuses[code] = statuses.get(code, 0) + 1

    def auth_failure(self, status: int, header: str | None) -> None:
        """A refused login: 407 without or with credentials, or 429 from the IP throttle."""
        if status == 429:
            reason = "throttled"
        elif header is None:
            reason = "missing"
        else:
            reason = "invalid"
        failures = self.auth_failures
        failures[reason] = failures.get(reason, 0) + 1


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


def producer_state(reporter: Any) -> dict[str, Any]:
    """The event producer's state for /healthz; `applicable` False for non-Kafka reporters."""
    if not hasattr(reporter, "connected"):
        return {"applicable": False, "connected": None, "reporter": type(reporter).__name__}
    return {
        "applicable": True,
        "connected": bool(reporter.connected),
        "reporter": type(reporter).__name__,
        "queue": reporter.queue_depth(),
        "delivered": reporter.delivered,
    }


def restrictions_state(server: Any, plugins: Iterable[Any]) -> dict[str, Any]:
    """Whether every control plugin loaded its restriction snapshot and follows its stream."""
    plugins = list(plugins)
    loaded = all(getattr(p, "loaded", True) for p in plugins)
    streaming = all(getattr(p, "streaming", True) for p in plugins)
    return {
        "loaded": loaded,
        "control_stream": streaming,
        "plugins": len(plugins),
        "restricted_users": len(server.registry.restricted()),
    }


def health(server: Any, reporter: Any, plugins: Iterable[Any]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of the proxy's /healthz.

    503 when the proxy cannot serve correctly: not listening (starting or draining) or
    its restriction snapshot is not loaded (it could admit users it must refuse).
    200 "degraded" when only Kafka is away: the proxy keeps serving and keeps every byte
    (librdkafka queue, then the spool), so a load balancer must not take all proxies out
    of rotation during a broker outage; the body says what is wrong.
    """
    listening = bool(getattr(server, "started", False)) and not server.draining
    producer = producer_state(reporter)
    restrictions = restrictions_state(server, plugins)
    if not listening or not restrictions["loaded"]:
        status, code = "unavailable", 503
    elif producer["connected"] is False or not restrictions["control_stream"]:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    body = {
        "status": status,
        "checks": {
            "listening": listening,
            "producer": producer,
            "restrictions": restrictions,
        },
        "connections_open": len(server.registry.connections),
    }
    return code, body


class ProxyCollector(Collector):
    """Builds the proxy's metric families from live state at scrape time."""

    def __init__(self, server: Any, reporter: Any, plugins: Iterable[Any]) -> None:
        self.server = server
        self.reporter = reporter
        self.plugins = list(plugins)

    def collect(self) -> Iterator[Any]:
        server = self.server
        m: ProxyMetrics = server.metrics
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
        applied = sum(getattr(p, "applied", 0) for p in self.plugins)
        yield CounterMetricFamily(
            f"{PREFIX}_control_events_applied",
            "Control events (restrictions, plan changes, revocations) applied.",
            applied,
        )

    def _reporter_families(self) -> Iterator[Any]:
        reporter = self.reporter
        queue = GaugeMetricFamily(
            f"{PREFIX}_producer_queue",
            "Traffic events waiting: pending (summed per user, not yet produced), "
            "in_flight (in librdkafka, unacknowledged), retry (to be produced again).",
            labels=["stage"],
        )
        if hasattr(reporter, "queue_depth"):
            for stage, depth in reporter.queue_depth().items():
                queue.add_metric([stage], depth)
        yield queue
        if hasattr(reporter, "connected"):
            yield GaugeMetricFamily(
                f"{PREFIX}_producer_connected",
                "1 while the event producer has a broker connection up.",
                1 if reporter.connected else 0,
            )
            yield CounterMetricFamily(
                f"{PREFIX}_events_delivered",
                "Traffic events acknowledged by Kafka.",
                reporter.delivered,
            )
        spool_dir = getattr(reporter, "spool_dir", None)
        files, size = spool_usage(Path(spool_dir)) if spool_dir else (0, 0)
        yield GaugeMetricFamily(
            f"{PREFIX}_spool_files", "Spool files of undelivered traffic on this host.", files
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_spool_bytes", "Bytes in spool files of undelivered traffic.", size
        )


def registry_build(server: Any, reporter: Any, plugins: Iterable[Any]) -> CollectorRegistry:
    """A private registry: the proxy's collector plus process metrics (CPU, RSS, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(server, reporter, plugins))
    ProcessCollector(registry=registry)
    return registry
