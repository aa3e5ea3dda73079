"""The proxy's Kafka reporter: per-user byte deltas -> UserConsumedTrafficEvent, losslessly.

`report()` runs on the gevent hub and only adds the deltas to a per-user dict under a
native lock (microseconds). A native thread from a private gevent ThreadPool owns the
confluent-kafka producer (idempotent, acks=all, no message timeout) and does every
blocking call: it turns the pending dict into events, each with this instance's id and
the next sequence number, and serves delivery reports.

No byte is lost:
- while the broker is away, at most KAFKA_REPORTER_MAX_IN_FLIGHT events wait in
  librdkafka (retried forever); newer deltas are summed per user, so memory stays
  bounded by the number of users, not by the outage's length;
- at shutdown, whatever is not acknowledged within the timeout is written to a spool
  file (KAFKA_REPORTER_SPOOL_DIR); the next start sends it again with its original
  instance id and sequence number, so the plan-controller applies it at most once.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from gevent.event import AsyncResult
from gevent.monkey import get_original
from gevent.threadpool import ThreadPool

from goproxy_site.events import schemas
from goproxy_site.events.kafka import EventBusError, KafkaEventProducer, RawMessage, topics_ensure
from proxy_daemon.hooks import DeliveryState, TrafficDelta

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.05
# librdkafka statistics (broker connection states) every this many ms, for /healthz.
STATS_INTERVAL_MS = 2000
# A delivery this recent also counts as connected (brokers may close idle connections).
RECENT_DELIVERY = 60.0
TOPICS_RETRY_INTERVAL = 5.0


def _native_lock() -> _thread.LockType:
    """A real OS lock even when the threading module is monkey-patched."""
    return get_original("_thread", "allocate_lock")()


@dataclass(slots=True)
class _Pending:
    """A user's deltas summed since the last hand-over to the producer."""

    up: int
    down: int
    first: datetime  # when the first of them was reported


class KafkaReporter:
    """Reporter (proxy_daemon.hooks) that publishes deltas to KAFKA_TOPIC_TRAFFIC."""

    def __init__(self, *, producer_config: dict[str, Any] | None = None) -> None:
        host = socket.gethostname()[:40]
        self.instance_id = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.topic = settings.KAFKA_TOPIC_TRAFFIC
        self.max_in_flight = settings.KAFKA_REPORTER_MAX_IN_FLIGHT
        self.spool_dir = Path(settings.KAFKA_REPORTER_SPOOL_DIR)
        self._producer_config = {
            "message.timeout.ms": 0,  # retry forever: an outage must not drop deltas
            "log.connection.close": False,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._on_stats,
            **(producer_config or {}),
        }
        self._lock = _native_lock()
        self._pending: dict[int, _Pending] = {}
        # Everything below is touched only by the sender thread (and by close() after it).
        self._seq = 0
        self._retry: deque[schemas.UserConsumedTrafficEvent] = deque()
        self._in_flight: dict[uuid.UUID, schemas.UserConsumedTrafficEvent] = {}
        self._claimed: list[Path] = []
        self._stopping = False
        self._close_deadline = 0.0
        self._pool: ThreadPool | None = None
        self._done: AsyncResult | None = None
        self.delivered = 0
        # Written by the sender thread, read by /healthz and /metrics on the hub.
        self.brokers_up = False
        self._delivered_at = float("-inf")

    @property
    def connected(self) -> bool:
        """A broker connection is up, or Kafka acknowledged an event recently."""
        return self.brokers_up or time.monotonic() - self._delivered_at < RECENT_DELIVERY

    def queue_depth(self) -> dict[str, int]:
        """Events not yet acknowledged, by stage (len() of each is atomic; no lock needed)."""
        return {
            "pending": len(self._pending),
            "in_flight": len(self._in_flight),
            "retry": len(self._retry),
        }

    def delivery(self) -> DeliveryState:
        return DeliveryState(
            connected=self.connected,
            delivered=self.delivered,
            queue=self.queue_depth(),
            spool_dir=self.spool_dir,
        )

    def _on_stats(self, stats_json: str) -> None:
        try:
            brokers = json.loads(stats_json).get("brokers", {})
        except ValueError:
            return
        self.brokers_up = any(b.get("state") == "UP" for b in brokers.values())

    # -- hub side --------------------------------------------------------------------
    def start(self) -> None:
        self._load_spool()
        self._pool = ThreadPool(1)
        self._done = self._pool.spawn(self._run)
        logger.info(
            "Kafka reporter %s started (%d spooled events)", self.instance_id, len(self._retry)
        )

    def report(self, deltas: list[TrafficDelta]) -> None:
        now = datetime.now(UTC)
        with self._lock:
            for d in deltas:
                entry = self._pending.get(d.user_id)
                if entry is None:
                    self._pending[d.user_id] = _Pending(d.bytes_up, d.bytes_down, now)
                else:
                    entry.up += d.bytes_up
                    entry.down += d.bytes_down

    def close(self, timeout: float) -> None:
        """Send what is left for up to `timeout` s, then spool whatever is unacknowledged."""
        self._close_deadline = time.monotonic() + timeout
        self._stopping = True
        if self._pool is not None and self._done is not None:
            self._done.wait(timeout + 1.0)
            self._pool.kill()

    # -- sender thread ---------------------------------------------------------------
    def _next_events(self) -> list[schemas.UserConsumedTrafficEvent]:
        with self._lock:
            pending, self._pending = self._pending, {}
        events = []
        for user_id, entry in pending.items():
            self._seq += 1
            events.append(
                schemas.UserConsumedTrafficEvent(
                    occurred_at=entry.first,
                    user_id=user_id,
                    bytes_up=entry.up,
                    bytes_down=entry.down,
                    instance_id=self.instance_id,
                    seq=self._seq,
                )
            )
        return events

    def _on_delivery(
        self, event: schemas.UserConsumedTrafficEvent
    ) -> Callable[[Exception | None, RawMessage], None]:
        def done(err: Exception | None, msg: RawMessage) -> None:
            self._in_flight.pop(event.event_id, None)
            if err is None:
                self.delivered += 1
                self._delivered_at = time.monotonic()
            else:
                logger.warning("traffic event %s not delivered (%s); retrying", event.seq, err)
                self._retry.append(event)

        return done

    def _send(self, producer: KafkaEventProducer) -> None:
        while self._retry and len(self._in_flight) < self.max_in_flight:
            if not self._produce(producer, self._retry[0]):
                return
            self._retry.popleft()
        if len(self._in_flight) >= self.max_in_flight:
            return  # broker slow or away: keep summing per user instead
        for event in self._next_events():
            if not self._produce(producer, event):
                self._retry.append(event)

    def _produce(
        self, producer: KafkaEventProducer, event: schemas.UserConsumedTrafficEvent
    ) -> bool:
        try:
            producer.send(event, topic=self.topic, on_delivery=self._on_delivery(event))
        except EventBusError as exc:
            logger.warning("traffic event %s queued locally: %s", event.seq, exc)
            return False
        self._in_flight[event.event_id] = event
        return True

    def _run(self) -> None:
        producer = KafkaEventProducer(**self._producer_config)
        topics_ready_at: float | None = 0.0
        while not self._stopping:
            if topics_ready_at is not None and time.monotonic() >= topics_ready_at:
                topics_ready_at = self._ensure_topic()
            self._send(producer)
            producer.poll(POLL_INTERVAL)
            if self._claimed and not self._retry and not self._in_flight:
                self._drop_claimed()
        # Final round: the last report() is in; deliver what the deadline allows.
        self._send(producer)
        while (self._in_flight or self._retry) and time.monotonic() < self._close_deadline:
            self._send(producer)
            producer.poll(POLL_INTERVAL)
        self._write_spool()
        logger.info("Kafka reporter %s closed (%d delivered)", self.instance_id, self.delivered)

    def _ensure_topic(self) -> float | None:
        try:
            topics_ensure([self.topic], timeout=2.0)
            return None
        except EventBusError as exc:
            logger.warning("traffic topic not ensured yet: %s", exc)
            return time.monotonic() + TOPICS_RETRY_INTERVAL

    # -- spool -----------------------------------------------------------------------
    def _spool_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("traffic-*.jsonl"))

    def _load_spool(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for path in self._spool_files():
            claimed = path.with_name(f"claimed-{self.instance_id}-{path.name}")
            try:
                path.rename(claimed)  # atomic: one proxy instance takes each file
            except FileNotFoundError:
                continue
            self._claimed.append(claimed)
            for lineno, line in enumerate(claimed.read_text().splitlines(), 1):
                try:
                    event = schemas.from_json(line)
                except schemas.EventError as exc:
                    logger.error(
                        "spool %s line %d unreadable, kept in file: %s", claimed, lineno, exc
                    )
                    continue
                if isinstance(event, schemas.UserConsumedTrafficEvent):
                    self._retry.append(event)

    def _drop_claimed(self) -> None:
        for path in self._claimed:
            path.unlink(missing_ok=True)
        self._claimed = []

    def _write_spool(self) -> None:
        leftover = [*self._in_flight.values(), *self._retry, *self._next_events()]
        if leftover:
            leftover.sort(key=lambda e: (e.instance_id, e.seq))
            path = self.spool_dir / f"traffic-{self.instance_id}.jsonl"
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as fh:
                for event in leftover:
                    fh.write(event.to_json() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.rename(path)
            logger.warning("spooled %d undelivered traffic events to %s", len(leftover), path)
        self._drop_claimed()
