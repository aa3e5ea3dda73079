from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from goproxy_site.tests.base import BaseTestCase
from plans.models import Plan, Subscription, SubscriptionStatus, UsageBucket
from plans.selectors import free_plan_claimed, subscription_get_current, usage_for_user
from plans.services import (
    FreePlanAlreadyClaimed,
    plan_assign,
    plan_claim_free,
    subscription_extend,
    subscription_reset_usage,
)


class FreePlanSeedTests(BaseTestCase):
    def test_the_seed_free_plan_exists(self) -> None:
        free = Plan.objects.get(name="Free")
        self.assertEqual(free.traffic_limit_bytes, 200_000_000)
        self.assertEqual(free.duration_days, 1)
        self.assertIs(free.is_free, True)


class PlanAssignTests(BaseTestCase):
    def test_it_replaces_the_current_subscription(self) -> None:
        big = Plan.objects.create(name="Big", traffic_limit_bytes=10**10, duration_days=30)
        new = plan_assign(user_id=self.alice.pk, plan=big)
        self.assertEqual(subscription_get_current(user_id=self.alice.pk), new)
        self.assertEqual(
            Subscription.objects.filter(user_id=self.alice.pk, is_current=True).count(), 1
        )
        old = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertIs(old.is_current, False)
        self.assertEqual(new.traffic_limit_bytes, 10**10)
        self.assertEqual(new.bytes_up + new.bytes_down, 0)

    def test_expiry_follows_the_plan_duration(self) -> None:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        sub = plan_assign(user_id=self.charlie.pk, plan=self.plan, now=now)
        self.assertEqual(sub.expires_at, now + timedelta(days=30))
        unlimited = Plan.objects.create(name="Forever")
        self.assertIsNone(plan_assign(user_id=self.charlie.pk, plan=unlimited).expires_at)

    def test_database_refuses_two_current_subscriptions(self) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic(using="plans"):
            Subscription.objects.create(user_id=self.alice.pk, plan=self.plan, is_current=True)


class FreeClaimTests(BaseTestCase):
    def test_a_free_plan_can_be_claimed_once(self) -> None:
        free = Plan.objects.get(name="Free")
        self.assertIs(free_plan_claimed(user_id=self.charlie.pk), False)
        plan_claim_free(user_id=self.charlie.pk, plan=free)
        self.assertIs(free_plan_claimed(user_id=self.charlie.pk), True)
        with self.assertRaises(FreePlanAlreadyClaimed):
            plan_claim_free(user_id=self.charlie.pk, plan=free)
        self.assertEqual(Subscription.objects.filter(user_id=self.charlie.pk).count(), 1)

    def test_only_a_free_plan_can_be_claimed(self) -> None:
        with self.assertRaises(ValidationError):
            plan_claim_free(user_id=self.charlie.pk, plan=self.plan)


class SubscriptionChangeTests(BaseTestCase):
    def test_reset_usage_lifts_limited(self) -> None:
        sub = subscription_reset_usage(subscription=self.bob_sub)
        self.assertEqual((sub.bytes_up, sub.bytes_down), (0, 0))
        self.assertEqual(sub.status, SubscriptionStatus.ACTIVE)

    def test_extend_adds_days_and_revives_expired(self) -> None:
        past = timezone.now() - timedelta(days=1)
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=past, status=SubscriptionStatus.EXPIRED
        )
        sub = subscription_extend(subscription=self.alice_sub, days=2)
        self.assertEqual(sub.status, SubscriptionStatus.ACTIVE)
        self.assertGreater(sub.expires_at, timezone.now() + timedelta(days=1, hours=23))
        with self.assertRaises(ValidationError):
            subscription_extend(subscription=self.alice_sub, days=0)


class UsageForUserTests(BaseTestCase):
    def test_hourly_and_daily_series(self) -> None:
        day = datetime(2026, 3, 1, tzinfo=UTC)
        for hour, up, down in [(1, 10, 100), (2, 20, 200), (25, 5, 50)]:
            UsageBucket.objects.create(
                user_id=self.alice.pk,
                subscription=self.alice_sub,
                hour=day + timedelta(hours=hour),
                bytes_up=up,
                bytes_down=down,
            )
        hourly = usage_for_user(user_id=self.alice.pk, granularity="hour")
        self.assertEqual([p["bytes_down"] for p in hourly], [100, 200, 50])
        daily = usage_for_user(user_id=self.alice.pk, granularity="day")
        self.assertEqual([(p["bytes_up"], p["bytes_down"]) for p in daily], [(30, 300), (5, 50)])
        ranged = usage_for_user(
            user_id=self.alice.pk, start=day + timedelta(hours=2), end=day + timedelta(days=2)
        )
        self.assertEqual(len(ranged), 2)
        self.assertEqual(usage_for_user(user_id=self.charlie.pk), [])
