"""Celery task functions (called directly) and the plan-controller management command."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import OutboxEvent as AccountsOutbox
from accounts.services import credential_revoke
from goproxy_site.events import schemas
from goproxy_site.events.kafka import KafkaEventProducer, topics_ensure
from goproxy_site.tests.base import BaseTestCase
from plans import tasks
from plans.models import OutboxEvent, Subscription, TrafficSequence


class PipelineTasksTests(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _broker(self, kafka_broker: str) -> Iterator[None]:
        suffix = uuid.uuid4().hex[:8]
        with self.settings(
            KAFKA_BOOTSTRAP_SERVERS=kafka_broker,
            KAFKA_TOPIC_TRAFFIC=f"t.traffic.{suffix}",
            KAFKA_TOPIC_CONTROL=f"t.control.{suffix}",
            KAFKA_TOPIC_DEAD_LETTER=f"t.dead.{suffix}",
        ):
            tasks._relay = None
            yield
            tasks._relay = None

    def test_expire_due_task(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        self.assertEqual(tasks.subscription_expire_due_task(), [self.alice.pk])

    def test_outbox_relay_task_delivers_both_outboxes(self) -> None:
        credential_revoke(credential=self.alice_cred.credential)
        pending = OutboxEvent.objects.filter(sent_at__isnull=True).count()
        self.assertGreater(pending, 0)
        self.assertEqual(tasks.outbox_relay_task(), pending + 1)
        self.assertFalse(OutboxEvent.objects.filter(sent_at__isnull=True).exists())
        self.assertFalse(AccountsOutbox.objects.filter(sent_at__isnull=True).exists())

    def test_sequences_prune_task(self) -> None:
        TrafficSequence.objects.create(instance_id="old", user_id=1, last_seq=5)
        TrafficSequence.objects.filter(instance_id="old").update(
            updated_at=timezone.now() - timedelta(days=30)
        )
        TrafficSequence.objects.create(instance_id="new", user_id=1, last_seq=5)
        self.assertEqual(tasks.traffic_sequences_prune_task(), 1)
        self.assertEqual(
            list(TrafficSequence.objects.values_list("instance_id", flat=True)), ["new"]
        )

    def test_consume_traffic_events_command(self) -> None:
        from django.conf import settings

        topics_ensure([settings.KAFKA_TOPIC_TRAFFIC])
        producer = KafkaEventProducer()
        producer.send(
            schemas.UserConsumedTrafficEvent(
                user_id=self.alice.pk, bytes_up=5, bytes_down=6, instance_id="cmd", seq=1
            )
        )
        self.assertEqual(producer.flush(10), 0)
        out = StringIO()
        with self.settings(KAFKA_CONSUMER_GROUP=f"cmd-{uuid.uuid4().hex[:6]}"):
            call_command("consume_traffic_events", max_seconds=4, stdout=out)
        self.assertIn("stopped: 1 deltas applied, 0 dead-lettered", out.getvalue())
        self.assertEqual(Subscription.objects.get(pk=self.alice_sub.pk).bytes_used, 11)
