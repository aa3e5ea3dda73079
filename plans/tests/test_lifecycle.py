"""Plan lifecycle with the clock driven by time-machine: statuses, reset cycles at exact
boundaries, queued renewals, top-up/extend/switch, throttling, on-hold starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from django.core.exceptions import ValidationError
from django.test import override_settings

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import cycles, services
from plans.models import (
    OutboxEvent,
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEventKind,
    SubscriptionStatus,
    UsageReset,
    UserRestriction,
)

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def delta(user_id: int, up: int, down: int, seq: int, at: datetime) -> schemas.Event:
    return schemas.UserConsumedTrafficEvent(
        user_id=user_id, bytes_up=up, bytes_down=down, instance_id="px-1", seq=seq, occurred_at=at
    )


def events(user_id: int) -> list[schemas.Event]:
    out = [schemas.from_json(r.payload) for r in OutboxEvent.objects.order_by("id")]
    return [e for e in out if getattr(e, "user_id", None) == user_id]


def kinds(sub: Subscription) -> list[str]:
    return list(sub.history.order_by("at", "id").values_list("kind", flat=True))


def current(user_id: int) -> Subscription:
    return Subscription.objects.select_related("plan").get(user_id=user_id, is_current=True)


class CycleTests(BaseTestCase):
    def test_calendar_boundaries_are_local_midnights(self) -> None:
        after = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # Sunday 29th, 00:30 after DST? no
        daily = cycles.next_boundary(
            cycle="daily", every_days=None, anchor=T0, after=after, tz=BERLIN
        )
        # 2026-03-28 23:30 Berlin (CET) -> next midnight 2026-03-29 00:00 CET = 23:00 UTC
        self.assertEqual(daily, datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
        # The following midnight is after the DST switch (CEST, UTC+2).
        nxt = cycles.next_boundary(
            cycle="daily", every_days=None, anchor=T0, after=daily, tz=BERLIN
        )
        self.assertEqual(nxt, datetime(2026, 3, 29, 22, 0, tzinfo=UTC))
        weekly = cycles.next_boundary(
            cycle="weekly", every_days=None, anchor=T0, after=T0, tz=ZoneInfo("UTC")
        )
        self.assertEqual(weekly, datetime(2026, 1, 19, tzinfo=UTC))  # Monday
        monthly = cycles.next_boundary(
            cycle="monthly",
            every_days=None,
            anchor=T0,
            after=datetime(2026, 12, 5, tzinfo=UTC),
            tz=ZoneInfo("UTC"),
        )
        self.assertEqual(monthly, datetime(2027, 1, 1, tzinfo=UTC))

    def test_every_n_days_counts_from_the_start(self) -> None:
        b = cycles.next_boundary(
            cycle="every_n_days", every_days=10, anchor=T0, after=T0, tz=BERLIN
        )
        self.assertEqual(b, T0 + timedelta(days=10))
        b2 = cycles.next_boundary(
            cycle="every_n_days", every_days=10, anchor=T0, after=T0 + timedelta(days=10), tz=BERLIN
        )
        self.assertEqual(b2, T0 + timedelta(days=20))
        self.assertIsNone(
            cycles.next_boundary(cycle="none", every_days=None, anchor=T0, after=T0, tz=BERLIN)
        )


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
                    delta(self.charlie.pk, 100, 200, 1, boundary - timedelta(microseconds=1)),
                    delta(self.charlie.pk, 10, 20, 2, boundary),
                ]
            )
        sub = current(self.charlie.pk)
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
            result = services.traffic_apply_batch(deltas=[delta(self.charlie.pk, 600, 500, 1, at)])
        self.assertEqual(result.restricted, [self.charlie.pk])
        self.assertEqual(current(self.charlie.pk).status, SubscriptionStatus.LIMITED)
        boundary = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
        with time_machine.travel(boundary - timedelta(seconds=1), tick=False):
            self.assertEqual(services.subscription_reset_due(), [])
        with time_machine.travel(boundary, tick=False):
            self.assertEqual(services.subscription_reset_due(), [self.charlie.pk])
        sub = current(self.charlie.pk)
        self.assertEqual((sub.status, sub.bytes_used, sub.lifetime_bytes_used), ("active", 0, 1100))
        last = events(self.charlie.pk)[-1]
        self.assertIsInstance(last, schemas.PlanAssignedEvent)
        self.assertEqual(UserRestriction.objects.get(user_id=self.charlie.pk).reason, "")
        # A delta from before the boundary that arrives after the reset counts to the
        # closed period, not to the new one.
        with time_machine.travel(boundary + timedelta(seconds=3), tick=False):
            services.traffic_apply_batch(
                deltas=[delta(self.charlie.pk, 7, 3, 2, boundary - timedelta(seconds=1))]
            )
        record = UsageReset.objects.get(subscription=sub)
        self.assertEqual((record.bytes_up, record.bytes_down, record.was_limited), (607, 503, True))
        sub = current(self.charlie.pk)
        self.assertEqual((sub.bytes_used, sub.lifetime_bytes_used), (0, 1110))
        self.assertEqual(
            kinds(sub), ["assigned", "started", "limited", "notified", "notified", "reset"]
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
                deltas=[delta(self.charlie.pk, 5, 5, 1, T0 + timedelta(minutes=30))]
            )
            sub = services.subscription_reset_usage(subscription=current(self.charlie.pk))
        self.assertEqual((sub.bytes_used, sub.lifetime_bytes_used), (0, 10))
        self.assertEqual(sub.next_reset_at, datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
        self.assertIs(UsageReset.objects.get(subscription=sub).manual, True)


class QueueAndOperatorTests(BaseTestCase):
    def setUp(self) -> None:
        self.small = Plan.objects.create(name="Small", traffic_limit_bytes=1000, duration_days=10)
        self.big = Plan.objects.create(name="Big", traffic_limit_bytes=10_000, duration_days=30)
        with time_machine.travel(T0, tick=False):
            services.plan_assign(user_id=self.charlie.pk, plan=self.small)

    def test_queued_plan_takes_over_at_exhaustion_without_a_restriction(self) -> None:
        services.plan_queue(user_id=self.charlie.pk, plan=self.big, by="op")
        at = T0 + timedelta(hours=2)
        with time_machine.travel(at, tick=False):
            result = services.traffic_apply_batch(
                deltas=[
                    delta(self.charlie.pk, 900, 0, 1, at),
                    delta(self.charlie.pk, 200, 0, 2, at + timedelta(seconds=1)),
                    delta(self.charlie.pk, 50, 0, 3, at + timedelta(seconds=2)),
                ]
            )
        self.assertEqual(result.restricted, [])
        new = current(self.charlie.pk)
        self.assertEqual((new.plan, new.status, new.bytes_up), (self.big, "active", 50))
        old = Subscription.objects.get(user_id=self.charlie.pk, plan=self.small)
        self.assertEqual((old.bytes_up, old.is_current), (1100, False))
        self.assertFalse(QueuedPlan.objects.exists())
        self.assertFalse(
            any(isinstance(e, schemas.RESTRICTION_TYPES) for e in events(self.charlie.pk))
        )
        self.assertIn(SubscriptionEventKind.RENEWED, kinds(old))

    def test_queued_plan_takes_over_at_expiry(self) -> None:
        services.plan_queue(user_id=self.charlie.pk, plan=self.big)
        with time_machine.travel(T0 + timedelta(days=10, seconds=1), tick=False):
            services.subscription_expire_due()
        new = current(self.charlie.pk)
        self.assertEqual((new.plan, new.started_at), (self.big, T0 + timedelta(days=10)))
        self.assertEqual(new.expires_at, T0 + timedelta(days=40))
        self.assertFalse(
            any(isinstance(e, schemas.RESTRICTION_TYPES) for e in events(self.charlie.pk))
        )

    def test_without_queue_expiry_restricts(self) -> None:
        with time_machine.travel(T0 + timedelta(days=10), tick=False):
            services.subscription_expire_due()
        sub = current(self.charlie.pk)
        self.assertEqual(sub.status, SubscriptionStatus.EXPIRED)
        self.assertEqual(kinds(sub)[-1], "expired")
        self.assertIsInstance(events(self.charlie.pk)[-1], schemas.UserConsumedTrafficWithoutPlan)

    def test_queue_on_an_expired_subscription_takes_over_at_once(self) -> None:
        with time_machine.travel(T0 + timedelta(days=11), tick=False):
            services.subscription_expire_due()
            sub = services.plan_queue(user_id=self.charlie.pk, plan=self.big)
        self.assertIsInstance(sub, Subscription)
        self.assertEqual(current(self.charlie.pk).plan, self.big)
        self.assertIsInstance(events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)

    def test_top_up_lifts_limited_until_the_period_ends(self) -> None:
        with time_machine.travel(T0 + timedelta(hours=1), tick=False):
            services.traffic_apply_batch(deltas=[delta(self.charlie.pk, 1000, 0, 1, T0)])
        self.assertEqual(current(self.charlie.pk).status, "limited")
        sub = services.subscription_top_up(subscription=current(self.charlie.pk), bytes_=500)
        self.assertEqual(
            (sub.status, sub.traffic_limit_bytes, sub.topup_bytes), ("active", 1500, 500)
        )
        self.assertIsInstance(events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)
        sub = services.subscription_reset_usage(subscription=sub)
        self.assertEqual((sub.traffic_limit_bytes, sub.topup_bytes), (1000, 0))
        with self.assertRaisesMessage(ValidationError, "at least one byte"):
            services.subscription_top_up(subscription=sub, bytes_=0)

    def test_switch_keeps_usage_and_start(self) -> None:
        with time_machine.travel(T0 + timedelta(hours=1), tick=False):
            services.traffic_apply_batch(deltas=[delta(self.charlie.pk, 1000, 0, 1, T0)])
            sub = services.subscription_switch(subscription=current(self.charlie.pk), plan=self.big)
        self.assertEqual((sub.plan, sub.status, sub.bytes_up), (self.big, "active", 1000))
        self.assertEqual((sub.started_at, sub.expires_at), (T0, T0 + timedelta(days=30)))
        self.assertEqual(sub.traffic_limit_bytes, 10_000)
        self.assertEqual(kinds(sub)[-1], "switched")

    def test_extend_disable_enable(self) -> None:
        with time_machine.travel(T0 + timedelta(days=1), tick=False):
            sub = services.subscription_extend(subscription=current(self.charlie.pk), days=5)
            self.assertEqual(sub.expires_at, T0 + timedelta(days=15))
            sub = services.subscription_disable(subscription=sub, reason="abuse")
            self.assertIsInstance(
                events(self.charlie.pk)[-1], schemas.UserConsumedTrafficWithoutPlan
            )
            sub = services.subscription_enable(subscription=sub)
        self.assertEqual(sub.status, "active")
        self.assertIsInstance(events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)
        self.assertEqual(kinds(sub)[-3:], ["extended", "disabled", "enabled"])
        with self.assertRaisesMessage(ValidationError, "not disabled"):
            services.subscription_enable(subscription=sub)


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
            result = services.traffic_apply_batch(deltas=[delta(self.charlie.pk, 999, 1, 1, T0)])
        self.assertEqual(result.restricted, [self.charlie.pk])
        sub = current(self.charlie.pk)
        self.assertEqual(sub.status, "limited")
        self.assertIs(sub.is_throttled, True)
        throttled = events(self.charlie.pk)[-1]
        self.assertIsInstance(throttled, schemas.UserThrottledEvent)
        self.assertEqual(throttled.speed_bps, 64_000)
        row = UserRestriction.objects.get(user_id=self.charlie.pk)
        self.assertEqual((row.reason, row.throttle_bps), ("", 64_000))
        self.assertEqual(kinds(sub)[-3:], ["throttled", "notified", "notified"])
        with time_machine.travel(datetime(2026, 1, 16, tzinfo=UTC), tick=False):
            services.subscription_reset_due()
        self.assertIsInstance(events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)
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
        sub = current(self.charlie.pk)
        self.assertEqual((sub.status, sub.started_at, sub.expires_at), ("on_hold", None, None))
        self.assertFalse(UserRestriction.objects.get(user_id=self.charlie.pk).is_restricted)
        used = T0 + timedelta(days=2, hours=3)
        with time_machine.travel(used + timedelta(seconds=2), tick=False):
            services.traffic_apply_batch(deltas=[delta(self.charlie.pk, 1, 1, 1, used)])
        sub = current(self.charlie.pk)
        self.assertEqual((sub.status, sub.started_at), ("active", used))
        self.assertEqual(sub.expires_at, used + timedelta(days=7))
        self.assertEqual(kinds(sub), ["assigned", "on_hold", "started"])

    def test_deadline_starts_it_anyway(self) -> None:
        with time_machine.travel(T0 + timedelta(days=29), tick=False):
            self.assertEqual(services.subscription_start_due(), [])
        with time_machine.travel(T0 + timedelta(days=30, minutes=1), tick=False):
            self.assertEqual(services.subscription_start_due(), [self.charlie.pk])
        sub = current(self.charlie.pk)
        self.assertEqual((sub.status, sub.started_at), ("active", T0 + timedelta(days=30)))

    def test_deadline_long_past_expires_directly(self) -> None:
        with time_machine.travel(T0 + timedelta(days=60), tick=False):
            services.subscription_start_due()
        self.assertEqual(current(self.charlie.pk).status, "expired")
