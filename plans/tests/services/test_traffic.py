"""Billing traffic deltas: exact byte accounting, sequence marks, no-plan usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import (
    Subscription,
    SubscriptionStatus,
    TrafficSequence,
    UnplannedUsage,
    UsageBucket,
    UserRestriction,
)
from plans.tests.factories import (
    restriction_events,
    traffic_delta,
)


class TrafficApplyBatchTests(BaseTestCase):
    def test_bytes_go_to_subscription_and_hourly_buckets(self) -> None:
        at = datetime(2026, 1, 1, 10, 59, 59, tzinfo=UTC)
        Subscription.objects.filter(pk=self.alice_sub.pk).update(current_from=at - timedelta(1))
        services.traffic_apply_batch(
            deltas=[
                traffic_delta(self.alice.pk, 10, 20, 1, at=at),
                traffic_delta(self.alice.pk, 1, 2, 2, at=at + timedelta(seconds=2)),
                traffic_delta(self.alice.pk, 100, 200, 1, instance="px-2", at=at),
            ]
        )
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual((sub.bytes_up, sub.bytes_down), (111, 222))
        buckets = {b.hour.hour: (b.bytes_up, b.bytes_down) for b in UsageBucket.objects.all()}
        self.assertEqual(buckets, {10: (110, 220), 11: (1, 2)})
        marks = dict(TrafficSequence.objects.values_list("instance_id", "last_seq"))
        self.assertEqual(marks, {"px-1": 2, "px-2": 1})

    def test_redelivered_deltas_count_once(self) -> None:
        batch = [traffic_delta(self.alice.pk, 5, 7, 1), traffic_delta(self.alice.pk, 5, 7, 2)]
        first = services.traffic_apply_batch(deltas=batch)
        again = services.traffic_apply_batch(deltas=[*batch, traffic_delta(self.alice.pk, 1, 1, 3)])
        self.assertEqual((first.applied, first.skipped), (2, 0))
        self.assertEqual((again.applied, again.skipped), (1, 2))
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual(sub.bytes_used, 26)

    def test_marks_are_per_user_so_partitions_may_interleave(self) -> None:
        # seq 2 (charlie's partition) is applied before seq 1 (alice's partition).
        services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 3, 0, 2)])
        services.traffic_apply_batch(deltas=[traffic_delta(self.alice.pk, 4, 0, 1)])
        self.assertEqual(Subscription.objects.get(pk=self.alice_sub.pk).bytes_up, 4)

    def test_user_without_plan_is_restricted_once_and_bytes_kept(self) -> None:
        services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 10, 1, 1)])
        services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 20, 2, 2)])
        events = restriction_events()
        self.assertEqual(len(events), 1)
        assert isinstance(events[0], schemas.UserConsumedTrafficWithoutPlan)
        self.assertEqual(events[0].reason, schemas.REASON_NO_PLAN)
        self.assertEqual(events[0].user_id, self.charlie.pk)
        usage = UnplannedUsage.objects.get(user_id=self.charlie.pk)
        self.assertEqual((usage.bytes_up, usage.bytes_down), (30, 3))

    def test_reaching_the_limit_limits_once(self) -> None:
        result = services.traffic_apply_batch(
            deltas=[traffic_delta(self.alice.pk, 400_000, 600_000, 1)]
        )
        services.traffic_apply_batch(deltas=[traffic_delta(self.alice.pk, 1, 1, 2)])
        self.assertEqual(result.restricted, [self.alice.pk])
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual(sub.status, SubscriptionStatus.LIMITED)
        self.assertEqual(sub.bytes_used, 1_000_002)
        events = restriction_events()
        self.assertEqual([type(e) for e in events], [schemas.UserExceededTrafficLimitEvent])
        self.assertEqual(UserRestriction.objects.get(user_id=self.alice.pk).reason, "limit")

    def test_below_the_limit_stays_active(self) -> None:
        services.traffic_apply_batch(deltas=[traffic_delta(self.alice.pk, 400_000, 599_999, 1)])
        self.assertEqual(
            Subscription.objects.get(pk=self.alice_sub.pk).status, SubscriptionStatus.ACTIVE
        )
        self.assertEqual(restriction_events(), [])

    def test_traffic_after_expiry_expires_and_restricts(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        services.traffic_apply_batch(deltas=[traffic_delta(self.alice.pk, 1, 1, 1)])
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual((sub.status, sub.bytes_used), (SubscriptionStatus.EXPIRED, 2))
        [event] = restriction_events()
        self.assertEqual(event.reason, schemas.REASON_EXPIRED)

    def test_already_limited_user_published_once_when_state_was_set_outside(self) -> None:
        # bob was set LIMITED by a raw update: the first traffic publishes, later ones not.
        services.traffic_apply_batch(deltas=[traffic_delta(self.bob.pk, 1, 0, 1)])
        services.traffic_apply_batch(deltas=[traffic_delta(self.bob.pk, 1, 0, 2)])
        self.assertEqual(len(restriction_events()), 1)

    def test_invalid_deltas_are_rejected_with_the_reason_and_the_rest_applied(self) -> None:
        future = timezone.now() + timedelta(hours=1)
        bad = {
            "negative bytes": traffic_delta(self.alice.pk, -1, 0, 1),
            "user_id must be positive": traffic_delta(0, 1, 1, 1),
            "seq must be positive": traffic_delta(self.alice.pk, 1, 1, 0),
            "in the future": traffic_delta(self.alice.pk, 1, 1, 5, at=future),
            "unknown user 987654": traffic_delta(987654, 1, 1, 1),
        }
        good = traffic_delta(self.alice.pk, 3, 4, 9)
        result = services.traffic_apply_batch(deltas=[*bad.values(), good])
        self.assertEqual(result.applied, 1)
        reasons = {event.event_id: reason for event, reason in result.rejected}
        self.assertEqual(len(reasons), len(bad))
        for expected, delta in bad.items():
            with self.subTest(expected):
                self.assertIn(expected, reasons[delta.event_id])
        self.assertEqual(Subscription.objects.get(pk=self.alice_sub.pk).bytes_used, 7)
        self.assertFalse(TrafficSequence.objects.filter(last_seq=5).exists())
