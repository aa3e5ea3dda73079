"""`manage.py consume_traffic_events`: the plan-controller loop in the foreground."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from goproxy_site.events import schemas
from goproxy_site.events.kafka import KafkaEventProducer, topics_ensure
from goproxy_site.tests.base import BaseTestCase
from goproxy_site.tests.support.broker import private_topics
from plans.models import Subscription


class ConsumeTrafficEventsCommandTests(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _broker(self, kafka_broker: str) -> Iterator[None]:
        with self.settings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker, **private_topics()):
            yield

    def test_consume_traffic_events_command(self) -> None:
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
