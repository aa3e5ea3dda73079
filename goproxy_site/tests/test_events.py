"""The event contract: JSON round trips, unknown/malformed input, and the Kafka adapters
against a real broker (tansu)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.test import SimpleTestCase

from goproxy_site.events import schemas
from goproxy_site.events.bus import RawMessage
from goproxy_site.events.kafka import (
    EventBusError,
    KafkaEventConsumer,
    KafkaEventProducer,
    topics_ensure,
)
from goproxy_site.events.memory import InMemoryEventBus
from goproxy_site.tests.support.net import free_port

EXAMPLES = [
    schemas.UserConsumedTrafficEvent(
        user_id=7, bytes_up=1, bytes_down=2, instance_id="px-a", seq=3
    ),
    schemas.UserExceededTrafficLimitEvent(user_id=7, restriction_version=2),
    schemas.UserConsumedTrafficWithoutPlan(user_id=8, reason="expired", restriction_version=1),
    schemas.PlanAssignedEvent(user_id=7, plan_id=1, subscription_id=9, restriction_version=3),
    schemas.ProxyCredentialRevoked(user_id=7, login="alice-proxy"),
    schemas.UserDeactivated(user_id=7),
]


def envelope(**over: object) -> bytes:
    data = json.loads(EXAMPLES[0].to_json())
    data.update(over)
    return json.dumps(data).encode()


class EventSchemaTests(SimpleTestCase):
    def test_every_type_round_trips_through_json(self) -> None:
        for event in EXAMPLES:
            with self.subTest(type=event.type):
                self.assertEqual(schemas.from_json(event.to_json()), event)

    def test_envelope_fields(self) -> None:
        data = json.loads(EXAMPLES[0].to_json())
        self.assertEqual(set(data), {"event_id", "type", "version", "occurred_at", "payload"})
        self.assertEqual(data["type"], "UserConsumedTrafficEvent")
        self.assertEqual(data["version"], schemas.SCHEMA_VERSION)
        uuid.UUID(data["event_id"])
        self.assertEqual(datetime.fromisoformat(data["occurred_at"]).tzinfo, UTC)

    def test_key_is_the_user_id(self) -> None:
        self.assertEqual({e.key for e in EXAMPLES[:2]}, {"7"})

    def test_topics_come_from_settings(self) -> None:
        with self.settings(KAFKA_TOPIC_TRAFFIC="t.traffic", KAFKA_TOPIC_CONTROL="t.control"):
            self.assertEqual(schemas.topic_for(EXAMPLES[0]), "t.traffic")
            self.assertEqual({schemas.topic_for(e) for e in EXAMPLES[1:]}, {"t.control"})

    def test_unknown_type_and_version_are_unknown_not_malformed(self) -> None:
        for raw in (envelope(type="SomethingNew"), envelope(version=2)):
            with self.subTest(raw=raw), self.assertRaises(schemas.UnknownEventError):
                schemas.from_json(raw)

    def test_malformed_messages_name_the_problem(self) -> None:
        cases = {
            b"not json": "not JSON",
            b"[1]": "must be a JSON object",
            None: "empty message",
            envelope(version="1"): "integer 'version'",
            envelope(payload=[]): "'payload' must be a JSON object",
            envelope(payload={"user_id": 1}): "payload misses",
            envelope(event_id="nope"): "bad or missing event_id",
            envelope(occurred_at="2026-01-01T00:00:00"): "time zone",
            envelope(
                payload={
                    "user_id": "1",
                    "bytes_up": 1,
                    "bytes_down": 1,
                    "instance_id": "a",
                    "seq": 1,
                }
            ): "user_id must be an integer",
            envelope(
                payload={
                    "user_id": True,
                    "bytes_up": 1,
                    "bytes_down": 1,
                    "instance_id": "a",
                    "seq": 1,
                }
            ): "user_id must be an integer",
        }
        for raw, message in cases.items():
            with self.subTest(raw=raw):
                with self.assertRaises(schemas.EventError) as ctx:
                    schemas.from_json(raw)
                self.assertNotIsInstance(ctx.exception, schemas.UnknownEventError)
                self.assertIn(message, str(ctx.exception))

    def test_in_memory_bus_redelivers_uncommitted(self) -> None:
        bus = InMemoryEventBus()
        bus.producer().send(EXAMPLES[0], topic="t")
        first = bus.consumer(group_id="g", topics=["t"])
        self.assertEqual(len(first.consume(10, 0)), 1)
        again = bus.consumer(group_id="g", topics=["t"])  # first never committed
        self.assertEqual(len(again.consume(10, 0)), 1)
        again.commit()
        self.assertEqual(bus.consumer(group_id="g", topics=["t"]).consume(10, 0), [])


class KafkaAdapterTests(SimpleTestCase):
    """The confluent-kafka adapters against the session's tansu broker."""

    @pytest.fixture(autouse=True)
    def _broker(self, kafka_broker: str) -> Iterator[None]:
        with self.settings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker):
            yield

    def test_produce_consume_commit_resume(self) -> None:
        topic = f"test.adapter.{uuid.uuid4().hex[:8]}"
        topics_ensure([topic], partitions=3)
        producer = KafkaEventProducer()
        delivered = []
        events = [
            schemas.UserConsumedTrafficEvent(
                user_id=u, bytes_up=i, bytes_down=0, instance_id="x", seq=i + 1
            )
            for i, u in enumerate([1, 2, 3, 1, 2, 3, 1])
        ]
        for event in events:
            producer.send(event, topic=topic, on_delivery=lambda err, msg: delivered.append(msg))
        self.assertEqual(producer.flush(10), 0)
        self.assertEqual(len(delivered), len(events))
        # One user's events land on one partition, in order.
        by_user: dict[bytes | None, set[int]] = {}
        for msg in delivered:
            by_user.setdefault(msg.key, set()).add(msg.partition)
        self.assertEqual({len(parts) for parts in by_user.values()}, {1})

        group = f"g-{uuid.uuid4().hex[:6]}"
        consumer = KafkaEventConsumer(group_id=group, topics=[topic])
        got: list[RawMessage] = []
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            got.extend(consumer.consume(4 - len(got), 0.5))
        consumer.commit()
        consumer.close()
        self.assertEqual(len(got), 4)
        resumed = KafkaEventConsumer(group_id=group, topics=[topic])
        rest: list[RawMessage] = []
        deadline = time.monotonic() + 20
        while len(got) + len(rest) < len(events) and time.monotonic() < deadline:
            rest.extend(resumed.consume(10, 0.5))
        resumed.close()
        decoded = [schemas.from_json(m.value) for m in got + rest]
        seen = [e for e in decoded if isinstance(e, schemas.UserConsumedTrafficEvent)]
        self.assertEqual(sorted(e.seq for e in seen), [e.seq for e in events])
        for user in (1, 2, 3):
            seqs = [e.seq for e in seen if e.user_id == user]
            self.assertEqual(seqs, sorted(seqs))

    def test_unreachable_broker_is_an_event_bus_error(self) -> None:
        with self.assertRaises(EventBusError):
            topics_ensure(["x"], bootstrap=f"127.0.0.1:{free_port()}", partitions=1, timeout=1)


class KafkaConsumerLagTests(SimpleTestCase):
    """`KafkaEventConsumer.lag()` against tansu: one message per produce call, so its
    high watermark is exact."""

    @pytest.fixture(autouse=True)
    def _broker(self, kafka_broker: str) -> Iterator[None]:
        self.topic = f"t.lag.{uuid.uuid4().hex[:8]}"
        with self.settings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker):
            topics_ensure([self.topic], partitions=2)
            yield

    def produce(self, count: int, partition: int) -> None:
        producer = KafkaEventProducer()
        for i in range(count):
            producer._producer.produce(self.topic, value=b"%d" % i, partition=partition)
            assert producer.flush(10) == 0  # one record batch per message

    def test_lag_is_watermark_minus_committed_per_partition(self) -> None:
        self.produce(6, partition=0)
        self.produce(2, partition=1)
        consumer = KafkaEventConsumer(group_id=f"lag-{self.topic}", topics=[self.topic])
        try:
            got: list = []
            for _ in range(100):  # bounded: join + fetch take a few seconds on tansu
                got += consumer.consume(8 - len(got), 0.2)
                if len(got) == 8:
                    break
            assert len(got) == 8
            consumer.commit()
            assert consumer.lag() == {(self.topic, 0): 0, (self.topic, 1): 0}
            self.produce(5, partition=0)
            lags = None
            for _ in range(50):
                lags = consumer.lag()
                if lags and lags[(self.topic, 0)] == 5:
                    break
                time.sleep(0.1)
            assert lags == {(self.topic, 0): 5, (self.topic, 1): 0}
        finally:
            consumer.close()
