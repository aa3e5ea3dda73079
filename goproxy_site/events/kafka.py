"""confluent-kafka adapters: one producer and one consumer class (`bus.py`'s interfaces).

Only these classes talk to the broker, so the same code runs against tansu (tests,
`make run`) and Apache Kafka (docker-compose). Neither class blocks for longer than the
timeout it is given; neither is safe to call from the gevent hub (the proxy runs them
in a real OS thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

from .bus import DeliveryCallback, EventBusError, Lag, RawMessage
from .schemas import Event, topic_for

__all__ = [
    "DeliveryCallback",
    "EventBusError",
    "KafkaEventConsumer",
    "KafkaEventProducer",
    "RawMessage",
    "topics_ensure",
]

logger = logging.getLogger(__name__)


def _error(exc: BaseException) -> EventBusError:
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    permanent = bool(err and (err.fatal() or not err.retriable()))
    return EventBusError(str(exc), permanent=permanent)


def _header(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


def _raw(msg: Message) -> RawMessage:
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    offset = msg.offset()
    return RawMessage(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=offset if offset is not None else -1,
        key=msg.key(),
        value=msg.value(),
        headers=tuple((k, _header(v)) for k, v in pairs),
    )


def topics_ensure(
    topics: Iterable[str],
    *,
    bootstrap: str | None = None,
    partitions: int | None = None,
    timeout: float = 10.0,
) -> None:
    """Create missing topics (idempotent); the broker must answer within `timeout` s."""
    admin = AdminClient({"bootstrap.servers": bootstrap or settings.KAFKA_BOOTSTRAP_SERVERS})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise _error(exc) from exc
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return
    count = partitions or settings.KAFKA_TOPIC_PARTITIONS
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=count, replication_factor=1) for t in wanted],
        operation_timeout=10,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise _error(exc) from exc
        logger.info("created topic %s with %d partitions", topic, count)


class KafkaEventProducer:
    """Idempotent producer (acks=all): `send()` queues, `poll()`/`flush()` deliver."""

    def __init__(self, *, bootstrap: str | None = None, **overrides: Any) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap or settings.KAFKA_BOOTSTRAP_SERVERS,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "client.id": "goproxy",
        }
        config.update(settings.KAFKA_PRODUCER_CONFIG)
        config.update(overrides)
        self._producer = Producer(config)

    def send(
        self,
        event: Event,
        *,
        topic: str | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one event keyed by its user id; raise EventBusError if the queue is full."""
        self.send_raw(
            topic or topic_for(event),
            key=event.key.encode(),
            value=event.to_json(),
            on_delivery=on_delivery,
        )

    def send_raw(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, bytes] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        callback = None
        if on_delivery is not None:

            def callback(err: KafkaError | None, msg: Message) -> None:
                on_delivery(EventBusError(str(err)) if err else None, _raw(msg))

        wire_headers: dict[str, str | bytes | None] | None = (
            None if headers is None else dict(headers)
        )
        try:
            self._producer.produce(
                topic, key=key, value=value, headers=wire_headers, on_delivery=callback
            )
        except BufferError as exc:
            raise EventBusError(f"producer queue full: {exc}") from exc
        except KafkaException as exc:
            raise _error(exc) from exc

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks for up to `timeout` seconds."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for delivery; return how many are still in flight."""
        return self._producer.flush(timeout)

    def __len__(self) -> int:
        return len(self._producer)


class KafkaEventConsumer:
    """A consumer with manual offset commits (eager assignment only: tansu's limit).

    With `manual=True` it joins no group: `assign_all()` reads every partition (each
    proxy instance must see every control event).
    """

    def __init__(
        self,
        *,
        group_id: str,
        topics: list[str],
        bootstrap: str | None = None,
        offset_reset: str = "earliest",
        manual: bool = False,
        **overrides: Any,
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap or settings.KAFKA_BOOTSTRAP_SERVERS,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": True,
            "auto.offset.reset": offset_reset,
            "session.timeout.ms": settings.KAFKA_SESSION_TIMEOUT_MS,
            # librdkafka's default (3000) would let short sessions time out.
            "heartbeat.interval.ms": max(100, settings.KAFKA_SESSION_TIMEOUT_MS // 3),
            "partition.assignment.strategy": "range",
            # Restrictions ride these topics: don't let the broker sit on a fetch 500 ms.
            "fetch.wait.max.ms": 50,
        }
        config.update(settings.KAFKA_CONSUMER_CONFIG)
        config.update(overrides)
        self._consumer = Consumer(config)
        self.topics = topics
        self.assigned: list[tuple[str, int]] = []
        self.assigned_at: float | None = None
        if not manual:
            self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def assign_all(self, *, timeout: float = 2.0) -> bool:
        """Manual mode: read every partition of the topics from the beginning, no group.

        Returns False while the broker or a topic is not there yet (call again later).
        """
        try:
            metadata = self._consumer.list_topics(timeout=timeout)
        except KafkaException as exc:
            logger.warning("cannot assign %s yet: %s", self.topics, exc)
            return False
        wanted = []
        for topic in self.topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                logger.warning("topic %s not available yet", topic)
                return False
            wanted += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions]
        self._consumer.assign(wanted)
        self._on_assign(self._consumer, wanted)
        return True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = [(p.topic, p.partition) for p in partitions]
        self.assigned_at = time.monotonic()
        logger.info("assigned %s", self.assigned)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("revoked %s", [(p.topic, p.partition) for p in partitions])
        self.assigned = []

    def consume(self, max_messages: int, timeout: float) -> list[RawMessage]:
        """Up to `max_messages` messages within `timeout` s; broker errors are logged."""
        try:
            msgs = self._consumer.consume(num_messages=max_messages, timeout=timeout)
        except KafkaException as exc:
            raise _error(exc) from exc
        out: list[RawMessage] = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                out.append(_raw(msg))
            elif err.code() == KafkaError._PARTITION_EOF:
                continue
            elif err.fatal():
                raise EventBusError(str(err), permanent=True)
            else:
                logger.warning("consumer error: %s", err)
        return out

    def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Synchronously commit `offsets` ((topic, partition) -> next offset to read), or
        the positions of everything consumed so far."""
        try:
            if offsets is None:
                self._consumer.commit(asynchronous=False)
            elif offsets:
                partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
                self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._NO_OFFSET:
                return
            raise _error(exc) from exc

    def lag(self, *, timeout: float = 2.0) -> Lag | None:
        """Messages not yet committed per assigned partition: high watermark - committed.

        None when the broker does not answer. Two broker round trips per call (committed
        offsets, then watermarks), so call it every few seconds, not per batch. On Apache
        Kafka the number is exact; tansu reports the base offset of the last record batch
        + 1 as its high watermark, so there it can read low by up to one batch (clamped at
        0).
        """
        try:
            assignment = self._consumer.assignment()
            if not assignment:
                return {}
            lags: Lag = {}
            for tp in self._consumer.committed(assignment, timeout=timeout):
                low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
                committed = tp.offset if tp.offset >= 0 else low  # none yet: from the start
                lags[(tp.topic, tp.partition)] = max(0, high - committed)
        except (KafkaException, RuntimeError) as exc:
            logger.warning("consumer lag not computed: %s", exc)
            return None
        return lags

    def close(self) -> None:
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            logger.warning("consumer close: %s", exc)
