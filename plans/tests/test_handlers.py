"""Kafka handlers: each consumed event type maps to one service call."""

from __future__ import annotations

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import handlers
from plans.models import Subscription


class HandlersTests(BaseTestCase):
    def test_handle_traffic_applies_the_batch(self) -> None:
        event = schemas.UserConsumedTrafficEvent(
            user_id=self.alice.pk, bytes_up=3, bytes_down=4, instance_id="px", seq=1
        )
        result = handlers.HANDLERS[schemas.UserConsumedTrafficEvent]([event, event])
        self.assertEqual((result.applied, result.skipped, result.users), (1, 1, 1))
        self.assertEqual(Subscription.objects.get(pk=self.alice_sub.pk).bytes_used, 7)
