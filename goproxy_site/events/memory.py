"""An in-memory event bus implementing `bus.EventSink` and `bus.EventSource`.

For unit tests and for running the plan-controller loop without a broker. Messages are
kept per topic in one list (a single partition); each consumer group has a committed
offset and a position, so redelivery after an uncommitted batch behaves like Kafka's.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from .bus import DeliveryCallback, EventBusError, Lag, RawMessage
from .schemas import Event, from_json, topic_for


class InMemoryEventBus:
    """Topics as lists; `producer()` and `consumer(group)` views share them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.topics: dict[str, list[RawMessage]] = defaultdict(list)
        self.committed: dict[tuple[str, str], int] = {}
        self.down = False  # when True, sends fail like an unreachable broker

    def append(self, topic: str, key: bytes | None, value: bytes | None, **kw: Any) -> RawMessage:
        with self._lock:
            log = self.topics[topic]
            msg = RawMessage(topic=topic, partition=0, offset=len(log), key=key, value=value, **kw)
            log.append(msg)
            return msg

    def events(self, topic: str) -> list[Event]:
        """Decoded events on a topic (test helper)."""
        return [from_json(m.value) for m in self.topics[topic]]

    def producer(self) -> InMemoryProducer:
        return InMemoryProducer(self)

    def consumer(self, *, group_id: str, topics: list[str]) -> InMemoryConsumer:
        return InMemoryConsumer(self, group_id=group_id, topics=topics)


class InMemoryProducer:
    def __init__(self, bus: InMemoryEventBus) -> None:
        self.bus = bus

    def send(
        self, event: Event, *, topic: str | None = None, on_delivery: DeliveryCallback | None = None
    ) -> None:
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
        if self.bus.down:
            raise EventBusError("in-memory broker is down")
        msg = self.bus.append(topic, key, value, headers=tuple((headers or {}).items()))
        if on_delivery is not None:
            on_delivery(None, msg)

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0


class InMemoryConsumer:
    def __init__(self, bus: InMemoryEventBus, *, group_id: str, topics: list[str]) -> None:
        self.bus = bus
        self.group_id = group_id
        self.topics = topics
        self.assigned = [(t, 0) for t in topics]
        self.position = {t: bus.committed.get((group_id, t), 0) for t in topics}

    def consume(self, max_messages: int, timeout: float) -> list[RawMessage]:
        out: list[RawMessage] = []
        for topic in self.topics:
            log = self.bus.topics[topic]
            start = self.position[topic]
            batch = log[start : start + max_messages - len(out)]
            self.position[topic] = start + len(batch)
            out.extend(batch)
        return out

    def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        if offsets is None:
            offsets = {(topic, 0): pos for topic, pos in self.position.items()}
        for (topic, _partition), pos in offsets.items():
            self.bus.committed[(self.group_id, topic)] = pos

    def lag(self, *, timeout: float = 2.0) -> Lag:
        """Messages on each topic past the group's committed offset (one partition, 0)."""
        return {
            (topic, 0): len(self.bus.topics[topic])
            - self.bus.committed.get((self.group_id, topic), 0)
            for topic in self.topics
        }

    def close(self) -> None:
        """Forget uncommitted progress, as a crashed Kafka consumer would."""
