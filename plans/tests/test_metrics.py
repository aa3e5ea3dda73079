"""Worker metrics: the plan-controller loop's counters, the lag gauge, the HTTP server."""

from __future__ import annotations

import socket
import urllib.request

from django.test import SimpleTestCase
from prometheus_client import REGISTRY

from goproxy_site.events.memory import InMemoryEventBus
from goproxy_site.outbox import OutboxRelay
from goproxy_site.tests.base import BaseTestCase
from plans import metrics
from plans.consumer import PlanController
from plans.tests.factories import (
    traffic_delta,
)

TRAFFIC = "goproxy.traffic"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class WorkerMetricsTests(BaseTestCase):
    def test_batches_applied_events_dead_letters_and_outbox_are_counted(self) -> None:
        bus = InMemoryEventBus()
        producer = bus.producer()
        controller = PlanController(
            consumer=bus.consumer(group_id="plan-controller", topics=[TRAFFIC]),
            producer=producer,
            relay=OutboxRelay(producer),
            poll_timeout=0,
        )
        names = [
            ("goproxy_worker_messages_consumed_total", {}),
            ("goproxy_worker_events_applied_total", {"event": "UserConsumedTrafficEvent"}),
            ("goproxy_worker_dead_letters_total", {}),
            ("goproxy_worker_batch_duration_seconds_count", {}),
            ("goproxy_worker_outbox_relayed_total", {}),
        ]
        before = [sample(n, **labels) for n, labels in names]
        for seq in (1, 2, 3):
            producer.send(
                traffic_delta(self.alice.pk, 300_000, 100_000, seq)
            )  # crosses alice's limit
        bus.append(TRAFFIC, b"1", b"{not json")
        producer.send(traffic_delta(self.alice.pk, 1, 1, 3))  # a redelivered sequence: a no-op
        self.assertIs(controller.step(), True)
        after = [sample(n, **labels) for n, labels in names]
        consumed, applied, dead, batches, relayed = (
            a - b for a, b in zip(after, before, strict=True)
        )
        self.assertEqual(consumed, 5)
        self.assertEqual(applied, 3)
        self.assertEqual(dead, 1)
        self.assertEqual(batches, 1)
        self.assertGreaterEqual(relayed, 1)  # alice's UserExceededTrafficLimitEvent

    def test_lag_gauge_follows_the_consumer_and_drops_revoked_partitions(self) -> None:
        bus = InMemoryEventBus()
        producer = bus.producer()
        consumer = bus.consumer(group_id="g", topics=[TRAFFIC])
        for seq in (1, 2, 3):
            producer.send(traffic_delta(self.alice.pk, 1, 1, seq))
        tracker = metrics.LagTracker(60)
        self.assertIs(tracker.maybe_update(consumer, now=0.0), True)
        self.assertEqual(sample("goproxy_worker_consumer_lag", topic=TRAFFIC, partition="0"), 3)
        consumer.consume(2, 0)
        consumer.commit()
        self.assertIs(tracker.maybe_update(consumer, now=1.0), False)  # not due yet
        self.assertIs(tracker.maybe_update(consumer, now=61.0), True)
        self.assertEqual(sample("goproxy_worker_consumer_lag", topic=TRAFFIC, partition="0"), 1)
        consumer.topics = []  # every partition revoked
        self.assertIs(tracker.maybe_update(consumer, now=122.0), True)
        self.assertIsNone(
            REGISTRY.get_sample_value(
                "goproxy_worker_consumer_lag", {"topic": TRAFFIC, "partition": "0"}
            )
        )


class MetricsServerTests(SimpleTestCase):
    def test_serves_the_registry_and_a_taken_port_is_a_logged_error(self) -> None:
        server = metrics.metrics_server_start(0, "127.0.0.1")
        assert server is not None
        try:
            port = server.server_address[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                body = resp.read().decode()
            assert "goproxy_worker_events_applied_total" in body
            assert "goproxy_worker_batch_duration_seconds_bucket" in body
            with socket.create_server(("127.0.0.1", 0)) as taken:
                busy = taken.getsockname()[1]
                with self.assertLogs("plans.metrics", "ERROR") as logs:
                    self.assertIsNone(metrics.metrics_server_start(busy, "127.0.0.1"))
            self.assertIn(f"cannot bind 127.0.0.1:{busy}", logs.output[0])
        finally:
            server.shutdown()
            server.server_close()
