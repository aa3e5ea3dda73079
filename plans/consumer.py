"""The plan-controller loop: Kafka traffic topic -> plans DB, and the outbox -> Kafka.

Order of work per batch, which is what makes it exact:
1. consume up to the current batch size: KAFKA_CONSUMER_BATCH_SIZE, doubling while
   batches come back full (the worker is behind) up to KAFKA_CONSUMER_MAX_BATCH_SIZE,
   halving again once they don't;
2. decode them; malformed ones go to the dead-letter topic (with the error in a header),
   unknown types/versions are logged and skipped;
3. apply the batch in ONE plans-DB transaction that also stores per-(instance, user)
   sequence high-water marks; a DB outage, deadlock or serialization failure is retried
   until it succeeds (nothing skipped); deltas the service rejects (with the reason)
   are dead-lettered, the rest of the batch applied;
4. commit the batch's offsets only after the DB commit (a crash before it means
   redelivery, which the high-water marks turn into no-ops);
5. relay the outbox rows that batch (and Django) wrote (goproxy_site/outbox.py).
In `run()` a second thread fetches and decodes the next batch while this one is in the
database (the offsets committed are always those of the batch applied, never of one
fetched ahead). Every KAFKA_HEARTBEAT_INTERVAL seconds the worker records its lag (events,
and the age of the oldest delta it has not applied) in the plans DB for the web's admin
and /healthz.
Runs in a Celery worker bootstep (plans/bootsteps.py) or `manage.py consume_traffic_events`.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone

from goproxy_site.events import schemas
from goproxy_site.events.bus import EventBusError, EventSink, EventSource, RawMessage
from goproxy_site.events.kafka import KafkaEventConsumer, KafkaEventProducer, topics_ensure
from goproxy_site.outbox import OutboxRelay

from . import handlers, metrics, services

logger = logging.getLogger(__name__)

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
MAX_BACKOFF = 5.0


def _close_connections() -> None:
    """Close this thread's DB connections (not one inside a transaction, as in tests)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def _release_connections() -> None:
    """Per unit of work, like a request: honour CONN_MAX_AGE and drop broken connections."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


# Handler -> the batch's events it applies, with their messages, in consumed order.
Groups = dict[handlers.Handler, list[tuple[RawMessage, schemas.Event]]]


@dataclass
class Fetched:
    """One consumed batch, decoded, with the offsets that commit it."""

    count: int = 0
    groups: Groups = field(default_factory=dict)
    dead: list[tuple[RawMessage, str]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class Stopped(Exception):
    """A stop was requested while waiting on an outage; the batch stays uncommitted."""


class PlanController:
    """The consume -> apply -> commit -> relay loop (see the module docstring)."""

    def __init__(
        self,
        *,
        consumer: EventSource,
        producer: EventSink,
        relay: OutboxRelay | None = None,
        batch_size: int | None = None,
        poll_timeout: float | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.relay = relay
        self.batch_size = batch_size or settings.KAFKA_CONSUMER_BATCH_SIZE
        self.poll_timeout = (
            settings.KAFKA_CONSUMER_POLL_TIMEOUT if poll_timeout is None else poll_timeout
        )
        self.should_stop = should_stop
        self.min_batch = self.batch_size
        self.max_batch = max(self.batch_size, settings.KAFKA_CONSUMER_MAX_BATCH_SIZE)
        self.applied = 0
        self.dead_lettered = 0
        self.lag = metrics.LagTracker(settings.KAFKA_LAG_INTERVAL)
        self.lag_seconds = 0.0
        self.worker = f"{socket.gethostname()[:100]}-{os.getpid()}"
        self._beat_at = 0.0
        self._beat_applied = 0
        metrics.BATCH_SIZE.set(self.batch_size)

    # -- helpers ---------------------------------------------------------------------
    def _wait(self, attempt: int, what: str, exc: BaseException) -> None:
        delay = min(0.2 * 2**attempt, MAX_BACKOFF)
        logger.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self.should_stop():
                raise Stopped(what)
            time.sleep(0.05)

    def _decode(self, msgs: Sequence[RawMessage]) -> tuple[Groups, list[tuple[RawMessage, str]]]:
        groups: Groups = {}
        dead: list[tuple[RawMessage, str]] = []
        for msg in msgs:
            try:
                event = schemas.from_json(msg.value)
            except schemas.UnknownEventError as exc:
                logger.warning("skipping %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
                continue
            except schemas.EventError as exc:
                dead.append((msg, str(exc)))
                continue
            handler = handlers.HANDLERS.get(type(event))
            if handler is None:
                logger.warning(
                    "skipping %s on %s: no plan-controller handler", event.type, msg.topic
                )
                continue
            groups.setdefault(handler, []).append((msg, event))
        return groups, dead

    def _apply(
        self, handler: handlers.Handler, items: list[tuple[RawMessage, schemas.Event]]
    ) -> list[tuple[RawMessage, str]]:
        """Apply one group; retry DB outages forever; dead-letter what is refused; send
        the grant answers once the transaction committed."""
        attempt = 0
        while True:
            try:
                result = handler([e for _, e in items])
            except TRANSIENT_DB_ERRORS as exc:
                # Outages, deadlocks and serialization failures: the whole batch again.
                _close_connections()
                metrics.DB_RETRIES.inc()
                self._wait(attempt, "plans DB write", exc)
                attempt += 1
                continue
            except (ValidationError, DatabaseError, ValueError, TypeError) as exc:
                if len(items) == 1:
                    return [(items[0][0], f"{type(exc).__name__}: {exc}")]
                logger.warning("batch refused (%s); applying one by one", exc)
                dead: list[tuple[RawMessage, str]] = []
                for item in items:
                    dead.extend(self._apply(handler, [item]))
                return dead
            self.applied += result.applied
            metrics.EVENTS_APPLIED.labels("UserConsumedTrafficEvent").inc(result.applied)
            if result.answers:
                metrics.EVENTS_APPLIED.labels("QuotaGrantRequest").inc(len(result.answers))
                self._answer(result.answers)
            if not result.rejected:
                return []
            source = {id(event): msg for msg, event in items}
            return [
                (source[id(event)], f"invalid {event.type}: {reason}")
                for event, reason in result.rejected
            ]

    def _answer(self, answers: list[schemas.QuotaGrant]) -> None:
        """Send grant answers to the control topic; the proxy they name takes them (the
        others skip them by the `instance` header). A lost answer costs that proxy a wait
        and a new request: the ledger re-syncs to what it reports holding."""
        topic = settings.KAFKA_TOPIC_CONTROL
        for answer in answers:
            try:
                self.producer.send_raw(
                    topic,
                    key=answer.key.encode(),
                    value=answer.to_json(),
                    headers={"instance": answer.instance_id.encode()},
                )
            except EventBusError as exc:
                logger.warning("grant answer for user %s not sent: %s", answer.user_id, exc)
        self.producer.poll(0)

    def _dead_letter(self, dead: list[tuple[RawMessage, str]]) -> None:
        topic = settings.KAFKA_TOPIC_DEAD_LETTER
        for msg, error in dead:
            logger.error(
                "dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, error
            )
            headers = {
                "error": error.encode()[:1000],
                "source": f"{msg.topic}/{msg.partition}/{msg.offset}".encode(),
            }
            attempt = 0
            while True:
                try:
                    self.producer.send_raw(topic, key=msg.key, value=msg.value, headers=headers)
                    break
                except EventBusError as exc:
                    self._wait(attempt, "dead-letter send", exc)
                    attempt += 1
        attempt = 0
        while self.producer.flush(5.0):
            self._wait(attempt, "dead-letter flush", EventBusError("not acknowledged"))
            attempt += 1
        self.dead_lettered += len(dead)
        metrics.DEAD_LETTERS.inc(len(dead))

    def _resize(self, consumed: int) -> None:
        """Grow batches while behind (a full batch), shrink them once caught up."""
        if consumed >= self.batch_size:
            size = min(self.batch_size * 2, self.max_batch)
        elif consumed < self.batch_size // 4:
            size = max(self.batch_size // 2, self.min_batch)
        else:
            return
        if size != self.batch_size:
            self.batch_size = size
            metrics.BATCH_SIZE.set(size)

    def _note_lag(self, groups: Groups) -> None:
        """Lag in seconds: age of the oldest traffic delta now being applied."""
        stamps = [
            event.occurred_at
            for items in groups.values()
            for _msg, event in items
            if isinstance(event, schemas.UserConsumedTrafficEvent)
        ]
        if stamps:
            oldest = min(stamps)
            self.lag_seconds = max(0.0, (timezone.now() - oldest).total_seconds())
            metrics.LAG_SECONDS.set(self.lag_seconds)

    def _heartbeat(self, now: float) -> None:
        if now - self._beat_at < settings.KAFKA_HEARTBEAT_INTERVAL:
            return
        elapsed = now - self._beat_at if self._beat_at else 0.0
        rate = (self.applied - self._beat_applied) / elapsed if elapsed else 0.0
        try:
            services.controller_heartbeat_record(
                worker=self.worker,
                lag_events=self.lag.total,
                lag_seconds=self.lag_seconds,
                events_per_second=rate,
            )
        except TRANSIENT_DB_ERRORS as exc:
            _close_connections()
            logger.warning("heartbeat not recorded: database unavailable (%s)", exc)
            return
        self._beat_at = now
        self._beat_applied = self.applied

    # -- the loop --------------------------------------------------------------------
    def fetch(self) -> Fetched:
        """Consume and decode one batch (no database work)."""
        msgs = self.consumer.consume(self.batch_size, self.poll_timeout)
        self._resize(len(msgs))
        if not msgs:
            return Fetched()
        groups, dead = self._decode(msgs)
        offsets: dict[tuple[str, int], int] = {}
        for msg in msgs:
            key = (msg.topic, msg.partition)
            if msg.offset >= offsets.get(key, 0):
                offsets[key] = msg.offset + 1
        return Fetched(len(msgs), groups, dead, offsets)

    def handle(self, fetched: Fetched) -> bool:
        """Apply one fetched batch, dead-letter, commit its offsets, report, relay."""
        if fetched.count:
            started = time.monotonic()
            metrics.MESSAGES_CONSUMED.inc(fetched.count)
            self._note_lag(fetched.groups)
            dead = list(fetched.dead)
            for handler, items in fetched.groups.items():
                dead.extend(self._apply(handler, items))
            if dead:
                self._dead_letter(dead)
            try:
                self.consumer.commit(fetched.offsets)
            except EventBusError as exc:
                # Uncommitted offsets only mean redelivery, which the marks make harmless.
                logger.warning("offset commit failed: %s", exc)
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        else:
            self.lag_seconds = 0.0  # nothing waiting
            metrics.LAG_SECONDS.set(0.0)
        now = time.monotonic()
        self.lag.maybe_update(self.consumer, now=now)
        self._heartbeat(now)
        if self.relay is not None:
            try:
                metrics.OUTBOX_RELAYED.inc(self.relay.step(force=bool(fetched.count)))
            except TRANSIENT_DB_ERRORS as exc:
                _close_connections()
                logger.warning("outbox relay: database unavailable (%s)", exc)
        _release_connections()
        return bool(fetched.count)

    def step(self) -> bool:
        """Fetch and handle one batch (or none); return True if messages were processed."""
        return self.handle(self.fetch())

    def run(self) -> None:
        """Handle batches until asked to stop, the next one fetched meanwhile."""
        ahead: queue.Queue[Fetched | BaseException] = queue.Queue(maxsize=1)
        done = threading.Event()

        def fetcher() -> None:
            try:
                while not done.is_set():
                    fetched = self.fetch()
                    while not done.is_set():
                        try:
                            ahead.put(fetched, timeout=0.2)
                            break
                        except queue.Full:
                            continue
            except BaseException as exc:  # handed to the loop, which raises it
                ahead.put(exc)

        thread = threading.Thread(target=fetcher, name="plan-controller-fetch", daemon=True)
        thread.start()
        try:
            while not self.should_stop():
                try:
                    item = ahead.get(timeout=self.poll_timeout)
                except queue.Empty:
                    continue
                if isinstance(item, BaseException):
                    raise item
                self.handle(item)
        except Stopped as exc:
            logger.info("stopped while retrying %s; the batch will be redelivered", exc)
        finally:
            done.set()
            thread.join(10)
            self.consumer.close()
            self.producer.flush(5.0)
            _close_connections()


def plan_controller_build(*, should_stop: Callable[[], bool]) -> PlanController:
    """A PlanController on the real broker: topics ensured, consumer group joined lazily."""
    attempt = 0
    while True:
        try:
            topics_ensure(
                [
                    settings.KAFKA_TOPIC_TRAFFIC,
                    settings.KAFKA_TOPIC_CONTROL,
                    settings.KAFKA_TOPIC_DEAD_LETTER,
                ]
            )
            break
        except EventBusError as exc:
            delay = min(0.5 * 2**attempt, MAX_BACKOFF)
            logger.warning("Kafka not reachable (%s); retrying in %.1f s", exc, delay)
            attempt += 1
            end = time.monotonic() + delay
            while time.monotonic() < end:
                if should_stop():
                    raise Stopped("broker start-up") from exc
                time.sleep(0.05)
    producer = KafkaEventProducer()
    consumer = KafkaEventConsumer(
        group_id=settings.KAFKA_CONSUMER_GROUP, topics=[settings.KAFKA_TOPIC_TRAFFIC]
    )
    return PlanController(
        consumer=consumer,
        producer=producer,
        relay=OutboxRelay(producer, interval=settings.KAFKA_OUTBOX_RELAY_INTERVAL),
        should_stop=should_stop,
    )
