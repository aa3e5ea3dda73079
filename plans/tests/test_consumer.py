"""The plan-controller loop: batches, offsets after the DB commit, dead letters, relay."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.conf import settings
from django.test import TransactionTestCase
from django.utils import timezone

from accounts.models import User
from goproxy_site.events import schemas
from goproxy_site.events.kafka import KafkaEventConsumer, KafkaEventProducer, topics_ensure
from goproxy_site.events.memory import InMemoryEventBus
from goproxy_site.outbox import OutboxRelay
from goproxy_site.tests.base import BaseTestCase
from goproxy_site.tests.support.broker import private_topics
from plans.consumer import Fetched, PlanController
from plans.handlers import handle_traffic
from plans.models import OutboxEvent, Plan, Subscription, SubscriptionStatus
from plans.tests.factories import (
    traffic_delta,
)

TRAFFIC = "goproxy.traffic"


CONTROL = "goproxy.control"


DEAD = "goproxy.dead-letter"


class PlanControllerTests(BaseTestCase):
    def setUp(self) -> None:
        self.bus = InMemoryEventBus()
        self.producer = self.bus.producer()

    def controller(self) -> PlanController:
        return PlanController(
            consumer=self.bus.consumer(group_id="plan-controller", topics=[TRAFFIC]),
            producer=self.producer,
            relay=OutboxRelay(self.producer),
            poll_timeout=0,
        )

    def used(self, sub: Subscription) -> int:
        return Subscription.objects.get(pk=sub.pk).bytes_used

    def test_batch_applied_committed_and_restriction_relayed(self) -> None:
        for i in range(1, 4):
            self.producer.send(traffic_delta(self.alice.pk, 200_000, 200_000, i))
        self.assertIs(self.controller().step(), True)
        self.assertEqual(self.used(self.alice_sub), 1_200_000)
        self.assertEqual(self.bus.committed[("plan-controller", TRAFFIC)], 3)
        control = self.bus.events(CONTROL)
        limited = [e for e in control if isinstance(e, schemas.UserExceededTrafficLimitEvent)]
        self.assertEqual([e.user_id for e in limited], [self.alice.pk])
        self.assertFalse(OutboxEvent.objects.filter(sent_at__isnull=True).exists())

    def test_grant_requests_are_answered_on_the_control_topic_for_their_instance(self) -> None:
        self.producer.send(traffic_delta(self.alice.pk, 100_000, 0, 1, instance="px-a"))
        self.producer.send(
            schemas.QuotaGrantRequest(
                user_id=self.alice.pk,
                instance_id="px-a",
                request_id=7,
                held_bytes=0,
                want_bytes=2_000_000,
            )
        )
        self.assertIs(self.controller().step(), True)
        [msg] = [m for m in self.bus.topics[CONTROL] if dict(m.headers).get("instance")]
        self.assertEqual(dict(msg.headers)["instance"], b"px-a")
        answer = schemas.from_json(msg.value)
        assert isinstance(answer, schemas.QuotaGrant)
        # The delta ahead of the request counted first: 1 MB - 100 kB is what was left.
        self.assertEqual((answer.request_id, answer.granted_bytes), (7, 900_000))
        self.assertEqual(msg.key, str(self.alice.pk).encode())

    def test_redelivery_after_a_crash_before_commit_counts_once(self) -> None:
        for i in range(1, 3):
            self.producer.send(traffic_delta(self.alice.pk, 10, 5, i))
        crashed = self.controller()
        msgs = crashed.consumer.consume(10, 0)
        crashed._apply(handle_traffic, [(m, schemas.from_json(m.value)) for m in msgs])
        crashed.consumer.close()  # died before committing offsets
        self.producer.send(traffic_delta(self.alice.pk, 1, 0, 3))
        self.controller().step()
        self.assertEqual(self.used(self.alice_sub), 31)

    def test_poison_messages_go_to_dead_letter_and_never_stall(self) -> None:
        self.bus.append(TRAFFIC, b"1", b"{not json")
        self.producer.send(traffic_delta(self.alice.pk, -5, 0, 1))  # refused by the service
        self.producer.send(traffic_delta(self.alice.pk, 7, 3, 2))
        self.assertIs(self.controller().step(), True)
        self.assertEqual(self.used(self.alice_sub), 10)
        dead = self.bus.topics[DEAD]
        self.assertEqual(len(dead), 2)
        errors = [dict(m.headers)["error"].decode() for m in dead]
        self.assertIn("not JSON", errors[0])
        self.assertIn("invalid UserConsumedTrafficEvent: negative bytes", errors[1])
        self.assertEqual(dead[0].value, b"{not json")
        self.assertEqual(dict(dead[0].headers)["source"], f"{TRAFFIC}/0/0".encode())
        self.assertEqual(self.bus.committed[("plan-controller", TRAFFIC)], 3)

    def test_unknown_types_and_versions_are_skipped(self) -> None:
        raw = json.loads(traffic_delta(self.alice.pk, 1, 1, 1).to_json())
        self.bus.append(TRAFFIC, b"1", json.dumps({**raw, "type": "FutureEvent"}).encode())
        self.bus.append(TRAFFIC, b"1", json.dumps({**raw, "version": 99}).encode())
        self.producer.send(schemas.UserDeactivated(user_id=self.alice.pk), topic=TRAFFIC)
        self.producer.send(traffic_delta(self.alice.pk, 2, 2, 2))
        with self.assertLogs("plans.consumer", "WARNING") as logs:
            self.controller().step()
        self.assertEqual(self.used(self.alice_sub), 4)
        self.assertEqual(self.bus.topics[DEAD], [])
        self.assertEqual(len(logs.records), 3)
        self.assertIn("unknown event type 'FutureEvent'", logs.output[0])


class PlanControllerKafkaTests(BaseTestCase):
    """The same loop on the real broker: consumer group, DLQ topic, offsets."""

    @pytest.fixture(autouse=True)
    def _broker(self, kafka_broker: str) -> Iterator[None]:
        self.topics = private_topics()
        with self.settings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker, **self.topics):
            topics_ensure(self.topics.values())
            yield

    def drain(self, consumer: KafkaEventConsumer, count: int) -> list:
        got: list = []
        deadline = time.monotonic() + 20
        while len(got) < count and time.monotonic() < deadline:
            got.extend(consumer.consume(count - len(got), 0.5))
        return got

    def test_batch_with_poison_on_the_real_broker(self) -> None:
        producer = KafkaEventProducer()
        traffic = self.topics["KAFKA_TOPIC_TRAFFIC"]
        producer.send_raw(traffic, key=str(self.alice.pk).encode(), value=b"\x00garbage")
        for i in range(1, 6):
            producer.send(traffic_delta(self.alice.pk, 100_000, 100_000, i))
        self.assertEqual(producer.flush(10), 0)
        group = f"pc-{uuid.uuid4().hex[:6]}"
        controller = PlanController(
            consumer=KafkaEventConsumer(group_id=group, topics=[traffic]),
            producer=producer,
            relay=OutboxRelay(producer),
        )
        deadline = time.monotonic() + 20
        while controller.applied < 5 and time.monotonic() < deadline:
            controller.step()
        controller.consumer.close()
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual((sub.bytes_used, sub.status), (1_000_000, SubscriptionStatus.LIMITED))
        self.assertEqual(controller.dead_lettered, 1)

        dead = KafkaEventConsumer(
            group_id=group + "-d", topics=[self.topics["KAFKA_TOPIC_DEAD_LETTER"]]
        )
        control = KafkaEventConsumer(
            group_id=group + "-c", topics=[self.topics["KAFKA_TOPIC_CONTROL"]]
        )
        [poison] = self.drain(dead, 1)
        self.assertEqual(poison.value, b"\x00garbage")
        self.assertIn(b"not JSON", dict(poison.headers)["error"])
        [limited] = [schemas.from_json(m.value) for m in self.drain(control, 1)]
        assert isinstance(limited, schemas.UserExceededTrafficLimitEvent)
        self.assertEqual(limited.user_id, self.alice.pk)
        dead.close()
        control.close()
        # Offsets were committed after the DB commit: all six messages.
        meta = Consumer({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS, "group.id": group})
        parts = meta.list_topics(traffic, timeout=5).topics[traffic].partitions
        committed = meta.committed([TopicPartition(traffic, p) for p in parts], timeout=5)
        meta.close()
        self.assertEqual(sum(max(tp.offset, 0) for tp in committed), 6)


class BacklogTests(TransactionTestCase):
    """A worker that fell 60 s behind 2,000 users catches up in growing batches."""

    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _broker(self, kafka_broker: str) -> Iterator[None]:
        self.topics = private_topics()
        with self.settings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker, **self.topics):
            topics_ensure(self.topics.values())
            yield

    def test_a_60_second_backlog_of_2000_users_clears_exactly(self) -> None:
        users, seconds = 2000, 60
        plan = Plan.objects.create(name="backlog", traffic_limit_bytes=10**12, duration_days=30)
        User.objects.bulk_create(
            [User(username=f"lag{i}", email=f"lag{i}@example.org") for i in range(users)]
        )
        ids = list(User.objects.filter(username__startswith="lag").values_list("pk", flat=True))
        start = timezone.now() - timedelta(seconds=seconds + 5)
        Subscription.objects.bulk_create(
            Subscription(
                user_id=uid,
                plan=plan,
                current_from=start,
                started_at=start,
                period_started_at=start,
                expires_at=start + timedelta(days=30),
                traffic_limit_bytes=plan.traffic_limit_bytes,
            )
            for uid in ids
        )
        producer = KafkaEventProducer()
        traffic = self.topics["KAFKA_TOPIC_TRAFFIC"]
        for second in range(seconds):  # each user reported once a second, for a minute
            at = start + timedelta(seconds=second)
            for uid in ids:
                producer.send(
                    schemas.UserConsumedTrafficEvent(
                        occurred_at=at,
                        user_id=uid,
                        bytes_up=10,
                        bytes_down=90,
                        instance_id=f"px-{uid % 2}",
                        seq=second + 1,
                    ),
                    topic=traffic,
                )
            producer.poll(0)
        self.assertEqual(producer.flush(60), 0)
        sizes: list[int] = []

        class Watched(PlanController):
            def handle(self, fetched: Fetched) -> bool:
                if fetched.count:
                    sizes.append(fetched.count)
                return super().handle(fetched)

        controller = Watched(
            consumer=KafkaEventConsumer(group_id=f"bl-{uuid.uuid4().hex[:6]}", topics=[traffic]),
            producer=producer,
            should_stop=lambda: controller.applied >= users * seconds or time.monotonic() > end,
        )
        end = time.monotonic() + 240
        began = time.monotonic()
        controller.run()
        took = time.monotonic() - began
        self.assertEqual(controller.applied, users * seconds)
        totals = Subscription.objects.filter(user_id__in=ids).values_list("bytes_up", "bytes_down")
        self.assertEqual(set(totals), {(10 * seconds, 90 * seconds)})
        # Batches grew while behind, up to the bound.
        self.assertGreater(max(sizes), settings.KAFKA_CONSUMER_BATCH_SIZE)
        self.assertLessEqual(max(sizes), settings.KAFKA_CONSUMER_MAX_BATCH_SIZE)
        print(
            f"\n{users * seconds} deltas of {users} users ({seconds} s behind) applied in "
            f"{took:.1f} s ({users * seconds / took:,.0f}/s, after the group join), "
            f"batches up to {max(sizes)}"
        )
