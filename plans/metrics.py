"""Prometheus metrics of the worker's plan-controller loop (prometheus_client).

The loop runs in the worker's main process (a bootstep thread), so the default registry
of that process holds everything; `metrics_server_start()` serves it on
WORKER_METRICS_PORT. Consumer lag is what the consumer adapter reports: the group's
committed offset against each partition's high watermark (`KafkaEventConsumer.lag`;
approximate on tansu).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    # For the annotation only: this module is loaded with the Celery app (through the
    # bootstep), so it imports nothing of the project at run time.
    from goproxy_site.events.bus import EventSource

logger = logging.getLogger(__name__)

MESSAGES_CONSUMED = Counter(
    "goproxy_worker_messages_consumed", "Messages read from the traffic topic."
)
EVENTS_APPLIED = Counter(
    "goproxy_worker_events_applied",
    "Events applied to the plans DB (redeliveries the sequence marks turn into no-ops are "
    "not counted).",
    ["event"],
)
DEAD_LETTERS = Counter(
    "goproxy_worker_dead_letters", "Messages sent to the dead-letter topic (malformed/refused)."
)
BATCH_SECONDS = Histogram(
    "goproxy_worker_batch_duration_seconds",
    "One batch from the end of the fetch to the offset commit (decode, DB transaction, "
    "dead letters, commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONSUMER_LAG = Gauge(
    "goproxy_worker_consumer_lag",
    "Messages not yet committed by the group: high watermark - committed offset, per "
    "partition assigned to this worker (approximate on tansu).",
    ["topic", "partition"],
)
LAG_EVENTS = Gauge(
    "goproxy_worker_lag_events",
    "Messages of this worker's partitions not yet applied (sum of goproxy_worker_consumer_lag).",
)
LAG_SECONDS = Gauge(
    "goproxy_worker_lag_seconds",
    "Age of the oldest traffic delta of the batch being applied (0 once caught up).",
)
BATCH_SIZE = Gauge(
    "goproxy_worker_batch_size",
    "Messages the next consume asks for (grows while behind, up to the maximum).",
)
OUTBOX_RELAYED = Counter(
    "goproxy_worker_outbox_relayed", "Outbox rows delivered to Kafka and marked sent."
)
DB_RETRIES = Counter(
    "goproxy_worker_db_retries", "Plans DB writes retried after a transient database error."
)


class LagTracker:
    """Updates CONSUMER_LAG at most every `interval` seconds; drops revoked partitions."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._labels: set[tuple[str, str]] = set()
        self.total = 0  # the last sum over this worker's partitions

    def maybe_update(self, consumer: EventSource, *, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval
        lags = consumer.lag()
        if lags is None:
            return False
        labels = {(topic, str(partition)) for topic, partition in lags}
        for stale in self._labels - labels:
            CONSUMER_LAG.remove(*stale)
        for (topic, partition), lag in lags.items():
            CONSUMER_LAG.labels(topic, str(partition)).set(lag)
        self._labels = labels
        self.total = sum(lags.values())
        LAG_EVENTS.set(self.total)
        return True


def metrics_server_start(port: int, addr: str) -> WSGIServer | None:
    """Serve the default registry on addr:port; None (and an error log) if it can't bind."""
    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as exc:
        logger.error(
            "worker metrics not served: cannot bind %s:%s (%s); set WORKER_METRICS_PORT to a "
            "free port per worker on this host, or unset it",
            addr,
            port,
            exc,
        )
        return None
    logger.info("worker metrics on http://%s:%s/metrics", addr, port)
    return server
