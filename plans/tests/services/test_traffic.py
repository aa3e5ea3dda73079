"""Billing traffic deltas: exact byte accounting, sequence marks, no-plan usage."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connections
from django.db.models import Sum
from django.test import TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import user_create
from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import (
    Plan,
    Subscription,
    SubscriptionStatus,
    TrafficSequence,
    UnplannedUsage,
    UsageBucket,
    UserRestriction,
)
from plans.tests.factories import (
    current_subscription,
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


def _users(count: int) -> list[int]:
    """`count` users on a 1 GB plan, current for the last day (fast-path users)."""
    plan = Plan.objects.create(name=f"big-{count}", traffic_limit_bytes=10**9, duration_days=30)
    ids = [
        user_create(username=f"u{count}-{i}", email=f"u{count}-{i}@example.org").pk
        for i in range(count)
    ]
    day_ago = timezone.now() - timedelta(days=1)
    for uid in ids:
        services.plan_assign(user_id=uid, plan=plan, now=day_ago)
    return ids


class BatchStatementTests(BaseTestCase):
    """A batch costs a fixed number of statements, however many users it carries."""

    def statements(self, user_ids: list[int], seq: int) -> int:
        deltas = [traffic_delta(uid, 10, 20, seq, instance=f"px-{uid % 4}") for uid in user_ids]
        with CaptureQueriesContext(connections["plans"]) as plans_db:
            result = services.traffic_apply_batch(deltas=deltas)
        self.assertEqual(result.applied, len(user_ids))
        return len(plans_db.captured_queries)

    def test_ten_users_and_three_hundred_users_cost_the_same(self) -> None:
        few, many = _users(10), _users(300)
        self.statements(few + many, 1)  # first sight of the users (existence check)
        self.assertEqual(self.statements(few, 2), self.statements(many, 2))
        self.assertLessEqual(self.statements(many, 3), 10)
        used = Subscription.objects.filter(user_id__in=many).values_list("bytes_up", flat=True)
        self.assertEqual(set(used), {30})

    def test_each_subscription_row_is_written_once_per_batch(self) -> None:
        ids = _users(5)
        deltas = [
            traffic_delta(uid, 1, 1, seq, instance=inst)
            for uid in ids
            for seq, inst in ((1, "px-a"), (2, "px-a"), (1, "px-b"))
        ]
        with CaptureQueriesContext(connections["plans"]) as plans_db:
            services.traffic_apply_batch(deltas=deltas)
        updates = [
            q["sql"]
            for q in plans_db.captured_queries
            if f"UPDATE {Subscription._meta.db_table} SET" in q["sql"]
        ]
        self.assertEqual(len(updates), 1)
        self.assertEqual(
            set(Subscription.objects.filter(user_id__in=ids).values_list("bytes_up", flat=True)),
            {3},
        )


class AttributionTests(BaseTestCase):
    """A delta is billed to the subscription current when its bytes moved."""

    def test_bytes_from_before_a_plan_change_stay_on_the_old_subscription(self) -> None:
        changed_at = timezone.now() - timedelta(seconds=30)
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            current_from=changed_at - timedelta(days=1)
        )
        big = Plan.objects.create(name="Big", traffic_limit_bytes=10**9, duration_days=30)
        new = services.plan_assign(user_id=self.alice.pk, plan=big, now=changed_at)
        services.traffic_apply_batch(
            deltas=[
                traffic_delta(self.alice.pk, 100, 900, 1, at=changed_at - timedelta(seconds=5)),
                traffic_delta(self.alice.pk, 7, 3, 2, at=changed_at + timedelta(seconds=5)),
            ]
        )
        old = Subscription.objects.get(pk=self.alice_sub.pk)
        new.refresh_from_db()
        self.assertEqual((old.bytes_up, old.bytes_down, old.is_current), (100, 900, False))
        self.assertEqual((new.bytes_up, new.bytes_down), (7, 3))
        self.assertEqual(old.lifetime_bytes_used, 1000)
        buckets = dict(
            UsageBucket.objects.values_list("subscription_id").annotate(n=Sum("bytes_up"))
        )
        self.assertEqual(buckets, {old.pk: 100, new.pk: 7})

    def test_late_bytes_of_an_exhausted_plan_do_not_restrict_the_new_one(self) -> None:
        changed_at = timezone.now() - timedelta(seconds=30)
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            current_from=changed_at - timedelta(days=1)
        )
        services.plan_assign(user_id=self.alice.pk, plan=self.plan, now=changed_at)
        result = services.traffic_apply_batch(
            deltas=[traffic_delta(self.alice.pk, 2_000_000, 0, 1, at=changed_at - timedelta(1))]
        )
        self.assertEqual(result.restricted, [])
        self.assertEqual(current_subscription(self.alice.pk).bytes_used, 0)
        self.assertEqual(Subscription.objects.get(pk=self.alice_sub.pk).bytes_up, 2_000_000)

    def test_bytes_from_before_any_plan_are_unplanned(self) -> None:
        assigned = timezone.now() - timedelta(seconds=10)
        Subscription.objects.filter(pk=self.alice_sub.pk).update(current_from=assigned)
        services.traffic_apply_batch(
            deltas=[
                traffic_delta(self.alice.pk, 5, 6, 1, at=assigned - timedelta(seconds=20)),
                traffic_delta(self.alice.pk, 1, 1, 2, at=assigned + timedelta(seconds=1)),
            ]
        )
        self.assertEqual(current_subscription(self.alice.pk).bytes_used, 2)
        unplanned = UnplannedUsage.objects.get(user_id=self.alice.pk)
        self.assertEqual((unplanned.bytes_up, unplanned.bytes_down), (5, 6))
        self.assertFalse(UserRestriction.objects.filter(user_id=self.alice.pk, reason="no_plan"))

    def test_a_queued_plan_taking_over_at_the_quota_bills_only_later_bytes(self) -> None:
        # alice has 1 MB; a queued plan takes over when a delta exhausts it.
        start = timezone.now() - timedelta(minutes=5)
        Subscription.objects.filter(pk=self.alice_sub.pk).update(current_from=start)
        next_plan = Plan.objects.create(name="Next", traffic_limit_bytes=10**9, duration_days=30)
        services.plan_queue(user_id=self.alice.pk, plan=next_plan)
        crossing = start + timedelta(minutes=1)
        services.traffic_apply_batch(
            deltas=[
                traffic_delta(self.alice.pk, 600_000, 400_000, 1, at=crossing),
                traffic_delta(self.alice.pk, 3, 4, 2, at=crossing + timedelta(seconds=1)),
            ]
        )
        # A delta of another proxy from before the take-over arrives late: the old plan.
        services.traffic_apply_batch(
            deltas=[
                traffic_delta(
                    self.alice.pk, 10, 20, 1, at=crossing - timedelta(seconds=2), instance="px-2"
                )
            ]
        )
        old = Subscription.objects.get(pk=self.alice_sub.pk)
        new = current_subscription(self.alice.pk)
        self.assertEqual(new.plan, next_plan)
        self.assertEqual((old.bytes_up, old.bytes_down), (600_010, 400_020))
        self.assertEqual((new.bytes_up, new.bytes_down), (3, 4))
        self.assertEqual(old.current_until, new.current_from)


@pytest.mark.skipif(
    settings.DATABASES["plans"]["ENGINE"].endswith("sqlite3"),
    reason="SQLite has one writer at a time: there is no row-lock order to test",
)
class ConcurrentBatchTests(TransactionTestCase):
    """Two workers applying overlapping batches at once (a rebalance) never deadlock and
    never count a delta twice."""

    databases = {"default", "plans"}

    def test_overlapping_batches_in_opposite_orders_apply_each_delta_once(self) -> None:
        ids = _users(60)
        deltas = [traffic_delta(uid, 1, 2, seq, instance="px") for seq in (1, 2) for uid in ids]
        errors: list[BaseException] = []

        def apply(batch: list[schemas.UserConsumedTrafficEvent]) -> None:
            try:
                for _ in range(3):  # the same deltas again: redeliveries
                    services.traffic_apply_batch(deltas=batch)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [
            threading.Thread(target=apply, args=(deltas,)),
            threading.Thread(target=apply, args=(list(reversed(deltas)),)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        totals = Subscription.objects.filter(user_id__in=ids).values_list("bytes_up", "bytes_down")
        self.assertEqual(set(totals), {(2, 4)})
