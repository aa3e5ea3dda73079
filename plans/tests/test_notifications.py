"""Quota and expiry notifications: once per period, e-mail, signed webhooks with retries,
a delivery log; a failing endpoint blocks nothing."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from unittest import mock

import time_machine
from celery import Celery
from django.core import mail
from django.test import override_settings

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from goproxy_site.tests.support.receiver import Receiver
from plans import notifications, services
from plans.models import (
    DeliveryStatus,
    Notification,
    Plan,
    Subscription,
    WebhookDelivery,
    WebhookEndpoint,
)

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def traffic(user_id: int, up: int, seq: int, at: datetime) -> None:
    services.traffic_apply_batch(
        deltas=[
            schemas.UserConsumedTrafficEvent(
                user_id=user_id,
                bytes_up=up,
                bytes_down=0,
                instance_id="px",
                seq=seq,
                occurred_at=at,
            )
        ]
    )


def sent_tasks(callbacks: list[Callable[[], object]]) -> list[tuple[str, list[int]]]:
    """Run captured on-commit callbacks; the Celery tasks they send, recorded, not sent."""
    with mock.patch.object(Celery, "send_task") as send:
        for callback in callbacks:
            callback()
    return [(c.args[0], c.kwargs["args"]) for c in send.call_args_list]


def valid_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = hmac.new(
        secret.encode(), headers["X-Goproxy-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(headers["X-Goproxy-Signature"], "sha256=" + expected)


class QuotaNotificationTests(BaseTestCase):
    def setUp(self) -> None:
        self.daily = Plan.objects.create(
            name="Daily", traffic_limit_bytes=1000, duration_days=30, reset_cycle="daily"
        )
        with time_machine.travel(T0, tick=False):
            services.plan_assign(user_id=self.charlie.pk, plan=self.daily)

    def test_thresholds_once_per_period(self) -> None:
        with self.captureOnCommitCallbacks(using="plans") as callbacks:
            with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
                traffic(self.charlie.pk, 790, 1, T0)
                traffic(self.charlie.pk, 20, 2, T0)  # crosses 80 %
                traffic(self.charlie.pk, 10, 3, T0)  # nothing new
                traffic(self.charlie.pk, 500, 4, T0)  # crosses 100 %
        notes = list(Notification.objects.order_by("threshold").values_list("threshold", flat=True))
        self.assertEqual(notes, [80, 100])
        ids = list(Notification.objects.order_by("threshold").values_list("pk", flat=True))
        self.assertEqual(
            sent_tasks(callbacks), [(notifications.NOTIFICATION_DISPATCH_TASK, [i]) for i in ids]
        )
        # The next day is a new period: the same thresholds notify again.
        with time_machine.travel(T0 + timedelta(days=1), tick=False):
            traffic(self.charlie.pk, 900, 5, T0 + timedelta(days=1))
        self.assertEqual(Notification.objects.filter(threshold=80).count(), 2)

    def test_email_goes_to_the_user(self) -> None:
        with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
            traffic(self.charlie.pk, 1000, 1, T0)
        note = Notification.objects.get(threshold=100)
        notifications.notification_dispatch(notification_id=note.pk)
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["charlie@example.org"])
        self.assertIn("100%", mail.outbox[0].subject)
        self.assertIn("refuses new traffic", mail.outbox[0].body)
        note.refresh_from_db()
        self.assertIsNotNone(note.emailed_at)


@override_settings(PLANS_NOTIFY_EXPIRY_DAYS=[3, 1], PLANS_NOTIFY_EXPIRY_HOURS=[2])
class ExpiryNotificationTests(BaseTestCase):
    def setUp(self) -> None:
        services.subscription_disable(subscription=self.bob_sub)  # only alice expires

    def test_nearest_reminder_only_and_again_after_extension(self) -> None:
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        expires = sub.expires_at
        assert expires is not None
        with time_machine.travel(expires - timedelta(days=4), tick=False):
            self.assertEqual(notifications.expiry_due(), [])
        with time_machine.travel(expires - timedelta(days=2), tick=False):
            self.assertEqual(notifications.expiry_due(), [(self.alice.pk, 72)])
            self.assertEqual(notifications.expiry_due(), [])
        with time_machine.travel(expires - timedelta(hours=5), tick=False):
            # A 30-day plan is reminded in days; the 2-hour reminder is for short plans.
            self.assertEqual(notifications.expiry_due(), [(self.alice.pk, 24)])
            # One more day: 1 day 5 h left, a new expiry, so the 3-day reminder again.
            services.subscription_extend(subscription=sub, days=1)
            self.assertEqual(notifications.expiry_due(), [(self.alice.pk, 72)])
        reminders = [n.describe() for n in Notification.objects.order_by("pk")]
        self.assertEqual(reminders, ["ends in 3 days", "ends in 1 day", "ends in 3 days"])

    def _assign(self, days: int) -> Subscription:
        plan = Plan.objects.create(
            name=f"{days}-day", traffic_limit_bytes=10**9, duration_days=days
        )
        with time_machine.travel(T0, tick=False):
            return services.plan_assign(user_id=self.charlie.pk, plan=plan)

    def test_a_one_day_plan_is_reminded_hours_before_its_end_not_at_its_start(self) -> None:
        sub = self._assign(1)
        for at in (T0, T0 + timedelta(minutes=1), T0 + timedelta(hours=21)):
            with self.subTest(at=at), time_machine.travel(at, tick=False):
                self.assertEqual(notifications.expiry_due(), [])
        with time_machine.travel(T0 + timedelta(hours=22, minutes=30), tick=False):
            self.assertEqual(notifications.expiry_due(), [(self.charlie.pk, 2)])
        note = Notification.objects.get(subscription=sub)
        self.assertEqual(note.describe(), "ends in 2 hours")
        self.assertIs(notifications.notification_email(notification=note), True)
        self.assertEqual(mail.outbox[-1].subject, "Your 1-day plan ends in 2 hours")
        self.assertIn("It expires on 16 Jan 2026, 10:00 UTC.", mail.outbox[-1].body)

    def test_a_three_day_plan_gets_the_one_day_reminder_only(self) -> None:
        self._assign(3)
        with time_machine.travel(T0 + timedelta(hours=1), tick=False):
            self.assertEqual(notifications.expiry_due(), [])
        with time_machine.travel(T0 + timedelta(days=2, hours=1), tick=False):
            self.assertEqual(notifications.expiry_due(), [(self.charlie.pk, 24)])

    def test_thresholds_follow_the_term(self) -> None:
        cases = {
            timedelta(days=30): [24, 72],
            timedelta(days=3): [24],
            timedelta(days=1): [2],
            timedelta(hours=3): [],
        }
        for term, hours in cases.items():
            with self.subTest(term=term):
                self.assertEqual(notifications.expiry_thresholds(term), hours)
        with override_settings(PLANS_NOTIFY_EXPIRY_HOURS=[]):
            self.assertEqual(notifications.expiry_thresholds(timedelta(days=1)), [])


@override_settings(PLANS_WEBHOOK_MAX_ATTEMPTS=3, PLANS_WEBHOOK_TIMEOUT=2.0)
class WebhookTests(BaseTestCase):
    def setUp(self) -> None:
        self.ok = Receiver(200)
        self.broken = Receiver(500)
        self.addCleanup(self.ok.shutdown)
        self.addCleanup(self.broken.shutdown)
        WebhookEndpoint.objects.create(name="ok", url=self.ok.url, secret="s3cret")
        WebhookEndpoint.objects.create(name="broken", url=self.broken.url, secret="other")
        with time_machine.travel(T0, tick=False):
            services.plan_assign(user_id=self.charlie.pk, plan=self.plan)
            traffic(self.charlie.pk, 800_000, 1, T0)
        self.note = Notification.objects.get()

    def test_signed_delivery_and_retries_until_given_up(self) -> None:
        with self.captureOnCommitCallbacks(using="plans") as queued:
            ids = notifications.notification_dispatch(notification_id=self.note.pk)
        self.assertEqual(len(ids), 2)
        # One Celery task per endpoint, sent once the deliveries are committed.
        self.assertEqual(
            sorted(sent_tasks(queued)),
            [(notifications.WEBHOOK_DELIVER_TASK, [i]) for i in sorted(ids)],
        )
        by_name = {d.endpoint.name: d for d in WebhookDelivery.objects.select_related("endpoint")}
        self.assertIs(notifications.webhook_deliver(delivery_id=by_name["ok"].pk), True)
        [(headers, body)] = self.ok.received
        self.assertIs(valid_signature("s3cret", headers, body), True)
        self.assertIs(valid_signature("wrong", headers, body), False)
        self.assertIn(b'"threshold":80', body)
        failing = by_name["broken"].pk
        for _ in range(2):
            with self.assertRaises(notifications.WebhookDeliveryError):
                notifications.webhook_deliver(delivery_id=failing)
        self.assertIs(notifications.webhook_deliver(delivery_id=failing), False)
        delivery = WebhookDelivery.objects.get(pk=failing)
        self.assertEqual(
            (delivery.status, delivery.attempts, delivery.response_status),
            (DeliveryStatus.FAILED, 3, 500),
        )
        self.assertEqual(len(self.broken.received), 3)
        event_ids = {h["X-Goproxy-Event-Id"] for h, _ in self.broken.received}
        self.assertEqual(event_ids, {str(delivery.event_id)})  # the same id on every retry
        ok = WebhookDelivery.objects.get(pk=by_name["ok"].pk)
        self.assertEqual((ok.status, ok.attempts), (DeliveryStatus.DELIVERED, 1))

    def test_unreachable_target_is_logged_and_retried(self) -> None:
        WebhookEndpoint.objects.update(url="http://127.0.0.1:9/closed")
        notifications.notification_dispatch(notification_id=self.note.pk)
        delivery = WebhookDelivery.objects.first()
        assert delivery is not None
        with self.assertRaises(notifications.WebhookDeliveryError):
            notifications.webhook_deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        self.assertIn("Connection refused", delivery.last_error)
