"""Celery task functions, called directly, and the task names services enqueue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from celery import current_app
from celery.exceptions import Retry
from django.conf import settings
from django.test import SimpleTestCase, override_settings
from django.utils import timezone

from accounts.models import OutboxEvent as AccountsOutbox
from accounts.services import credential_revoke
from goproxy_site.tests.base import BaseTestCase
from goproxy_site.tests.support.broker import private_topics
from goproxy_site.tests.support.receiver import Receiver
from plans import notifications, services, tasks
from plans.models import (
    Notification,
    OutboxEvent,
    Subscription,
    TrafficSequence,
    WebhookDelivery,
    WebhookEndpoint,
)
from plans.tasks import webhook_deliver_task
from plans.tests.factories import traffic_delta

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


class PipelineTasksTests(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _broker(self, kafka_broker: str) -> Iterator[None]:
        with self.settings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker, **private_topics()):
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


@override_settings(PLANS_WEBHOOK_MAX_ATTEMPTS=3)
class WebhookDeliverTaskTests(BaseTestCase):
    def setUp(self) -> None:
        self.broken = Receiver(500)
        self.addCleanup(self.broken.shutdown)
        WebhookEndpoint.objects.create(name="broken", url=self.broken.url, secret="other")
        with time_machine.travel(T0, tick=False):
            services.plan_assign(user_id=self.charlie.pk, plan=self.plan)
            services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 800_000, 0, 1, T0)])
        self.note = Notification.objects.get()

    def test_task_schedules_a_backoff_retry(self) -> None:
        notifications.notification_dispatch(notification_id=self.note.pk)
        failing = WebhookDelivery.objects.get(endpoint__name="broken")
        with self.assertRaises(Retry) as caught:
            webhook_deliver_task.apply(args=(failing.pk,), throw=True)
        self.assertEqual(caught.exception.when, 10.0)


class TaskNamesTests(SimpleTestCase):
    def test_every_task_enqueued_by_name_is_registered(self) -> None:
        for name, task in (
            (notifications.NOTIFICATION_DISPATCH_TASK, tasks.notification_dispatch_task),
            (notifications.WEBHOOK_DELIVER_TASK, tasks.webhook_deliver_task),
        ):
            with self.subTest(name=name):
                self.assertEqual(task.name, name)
                self.assertIn(name, current_app.tasks)

    def test_every_beat_entry_names_a_registered_task(self) -> None:
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            with self.subTest(task=entry["task"]):
                self.assertIn(entry["task"], current_app.tasks)
