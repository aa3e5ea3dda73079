"""The status machine with the clock driven by time-machine: reset cycles at exact
boundaries, throttling at the quota, on-hold starts, the due sweeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from django.core.exceptions import ValidationError
from django.test import override_settings

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import (
    Plan,
    Subscription,
    SubscriptionStatus,
    UsageReset,
    UserRestriction,
)
from plans.tests.factories import (
    current_subscription,
    history_kinds,
    traffic_delta,
    user_events,
)

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


BERLIN = ZoneInfo("Europe/Berlin")


@override_settings(PLANS_TIME_ZONE="Europe/Berlin")
class ResetCycleTests(BaseTestCase):
    def setUp(self) -> None:
        self.monthly = Plan.objects.create(
            name="Monthly", traffic_limit_bytes=1000, duration_days=365, reset_cycle="monthly"
        )

    def assign(self) -> Subscription:
        with time_machine.travel(T0, tick=False):
            return services.plan_assign(user_id=self.charlie.pk, plan=self.monthly)

    def test_boundary_splits_traffic_exactly(self) -> None:
        sub = self.assign()
        boundary = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)  # Feb 1st 00:00 in Berlin
        self.assertEqual(sub.next_reset_at, boundary)
        with time_machine.travel(boundary + timedelta(seconds=5), tick=False):
            services.traffic_apply_batch(
                deltas=[
                    traffic_delta(
                        self.charlie.pk, 100, 200, 1, boundary - timedelta(microseconds=1)
                    ),
                    traffic_delta(self.charlie.pk, 10, 20, 2, boundary),
                ]
            )
        sub = current_subscription(self.charlie.pk)
        self.assertEqual((sub.bytes_up, sub.bytes_down), (10, 20))
        self.assertEqual((sub.lifetime_bytes_up, sub.lifetime_bytes_down), (110, 220))
        [record] = UsageReset.objects.filter(subscription=sub)
        self.assertEqual((record.bytes_up, record.bytes_down), (100, 200))
        self.assertEqual((record.period_start, record.period_end), (T0, boundary))
        self.assertEqual(sub.period_started_at, boundary)
        self.assertEqual(sub.next_reset_at, datetime(2026, 2, 28, 23, 0, tzinfo=UTC))

    def test_beat_reset_lifts_limited_and_late_bytes_go_to_the_closed_period(self) -> None:
        self.assign()
        at = T0 + timedelta(days=3)
        with time_machine.travel(at, tick=False):
            result = services.traffic_apply_batch(
                deltas=[traffic_delta(self.charlie.pk, 600, 500, 1, at)]
            )
        self.assertEqual(result.restricted, [self.charlie.pk])
        self.assertEqual(current_subscription(self.charlie.pk).status, SubscriptionStatus.LIMITED)
        boundary = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
        with time_machine.travel(boundary - timedelta(seconds=1), tick=False):
            self.assertEqual(services.subscription_reset_due(), [])
        with time_machine.travel(boundary, tick=False):
            self.assertEqual(services.subscription_reset_due(), [self.charlie.pk])
        sub = current_subscription(self.charlie.pk)
        self.assertEqual((sub.status, sub.bytes_used, sub.lifetime_bytes_used), ("active", 0, 1100))
        last = user_events(self.charlie.pk)[-1]
        assert isinstance(last, schemas.PlanAssignedEvent)
        self.assertEqual(UserRestriction.objects.get(user_id=self.charlie.pk).reason, "")
        # A delta from before the boundary that arrives after the reset counts to the
        # closed period, not to the new one.
        with time_machine.travel(boundary + timedelta(seconds=3), tick=False):
            services.traffic_apply_batch(
                deltas=[traffic_delta(self.charlie.pk, 7, 3, 2, boundary - timedelta(seconds=1))]
            )
        record = UsageReset.objects.get(subscription=sub)
        self.assertEqual((record.bytes_up, record.bytes_down, record.was_limited), (607, 503, True))
        sub = current_subscription(self.charlie.pk)
        self.assertEqual((sub.bytes_used, sub.lifetime_bytes_used), (0, 1110))
        self.assertEqual(
            history_kinds(sub), ["assigned", "started", "limited", "notified", "notified", "reset"]
        )

    def test_idle_months_each_get_a_record(self) -> None:
        self.assign()
        with time_machine.travel(datetime(2026, 4, 10, tzinfo=UTC), tick=False):
            services.subscription_reset_due()
        ends = list(UsageReset.objects.values_list("period_end", flat=True))
        self.assertEqual(
            [e.astimezone(BERLIN).strftime("%m-%d %H:%M") for e in ends],
            ["02-01 00:00", "03-01 00:00", "04-01 00:00"],
        )

    def test_operator_reset_keeps_cycle_and_lifetime(self) -> None:
        sub = self.assign()
        with time_machine.travel(T0 + timedelta(hours=1), tick=False):
            services.traffic_apply_batch(
                deltas=[traffic_delta(self.charlie.pk, 5, 5, 1, T0 + timedelta(minutes=30))]
            )
            sub = services.subscription_reset_usage(
                subscription=current_subscription(self.charlie.pk)
            )
        self.assertEqual((sub.bytes_used, sub.lifetime_bytes_used), (0, 10))
        self.assertEqual(sub.next_reset_at, datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
        self.assertIs(UsageReset.objects.get(subscription=sub).manual, True)


class ThrottleTests(BaseTestCase):
    def test_quota_throttles_instead_of_cutting_until_reset(self) -> None:
        plan = Plan.objects.create(
            name="Throttle",
            traffic_limit_bytes=1000,
            duration_days=30,
            quota_action="throttle",
            throttle_speed_bps=64_000,
            reset_cycle="daily",
        )
        with time_machine.travel(T0, tick=False):
            services.plan_assign(user_id=self.charlie.pk, plan=plan)
            result = services.traffic_apply_batch(
                deltas=[traffic_delta(self.charlie.pk, 999, 1, 1, T0)]
            )
        self.assertEqual(result.restricted, [self.charlie.pk])
        sub = current_subscription(self.charlie.pk)
        self.assertEqual(sub.status, "limited")
        self.assertIs(sub.is_throttled, True)
        throttled = user_events(self.charlie.pk)[-1]
        assert isinstance(throttled, schemas.UserThrottledEvent)
        self.assertEqual(throttled.speed_bps, 64_000)
        row = UserRestriction.objects.get(user_id=self.charlie.pk)
        self.assertEqual((row.reason, row.throttle_bps), ("", 64_000))
        self.assertEqual(history_kinds(sub)[-3:], ["throttled", "notified", "notified"])
        with time_machine.travel(datetime(2026, 1, 16, tzinfo=UTC), tick=False):
            services.subscription_reset_due()
        assert isinstance(user_events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)
        row.refresh_from_db()
        self.assertEqual((row.reason, row.throttle_bps), ("", None))

    def test_throttle_plan_needs_a_speed(self) -> None:
        plan = Plan(name="Bad", quota_action="throttle")
        with self.assertRaisesMessage(ValidationError, "needs a throttle speed"):
            plan.full_clean()


class OnHoldTests(BaseTestCase):
    def setUp(self) -> None:
        self.plan = Plan.objects.create(
            name="Later",
            traffic_limit_bytes=10_000,
            duration_days=7,
            start_on_first_use=True,
            first_use_deadline_days=30,
        )
        with time_machine.travel(T0, tick=False):
            services.plan_assign(user_id=self.charlie.pk, plan=self.plan)

    def test_first_use_starts_the_clock(self) -> None:
        sub = current_subscription(self.charlie.pk)
        self.assertEqual((sub.status, sub.started_at, sub.expires_at), ("on_hold", None, None))
        self.assertFalse(UserRestriction.objects.get(user_id=self.charlie.pk).is_restricted)
        used = T0 + timedelta(days=2, hours=3)
        with time_machine.travel(used + timedelta(seconds=2), tick=False):
            services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 1, 1, 1, used)])
        sub = current_subscription(self.charlie.pk)
        self.assertEqual((sub.status, sub.started_at), ("active", used))
        self.assertEqual(sub.expires_at, used + timedelta(days=7))
        self.assertEqual(history_kinds(sub), ["assigned", "on_hold", "started"])

    def test_deadline_starts_it_anyway(self) -> None:
        with time_machine.travel(T0 + timedelta(days=29), tick=False):
            self.assertEqual(services.subscription_start_due(), [])
        with time_machine.travel(T0 + timedelta(days=30, minutes=1), tick=False):
            self.assertEqual(services.subscription_start_due(), [self.charlie.pk])
        sub = current_subscription(self.charlie.pk)
        self.assertEqual((sub.status, sub.started_at), ("active", T0 + timedelta(days=30)))

    def test_deadline_long_past_expires_directly(self) -> None:
        with time_machine.travel(T0 + timedelta(days=60), tick=False):
            services.subscription_start_due()
        self.assertEqual(current_subscription(self.charlie.pk).status, "expired")
