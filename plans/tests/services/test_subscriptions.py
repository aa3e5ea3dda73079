"""Subscription services: assign, the free-plan claim, extend, reset, queue, top up,
switch, disable and enable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import user_delete_account
from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.claim_keys import email_claim_hash
from plans.models import (
    FreePlanClaim,
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEventKind,
    SubscriptionStatus,
)
from plans.selectors import (
    free_plan_claimed,
    free_plan_claimed_by_email,
    plan_get_default_free,
    subscription_get_current,
)
from plans.services import (
    FreePlanAlreadyClaimed,
    plan_assign,
    plan_claim_free,
    subscription_extend,
    subscription_reset_usage,
)
from plans.tests.factories import (
    current_subscription,
    history_kinds,
    traffic_delta,
    user_events,
)

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


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
    def claim(self, user_id: int, email: str, plan: Plan | None = None) -> Subscription:
        return plan_claim_free(
            user_id=user_id, email=email, plan=plan or Plan.objects.get(name="Free")
        )

    def test_a_free_plan_can_be_claimed_once(self) -> None:
        self.assertIs(free_plan_claimed(user_id=self.charlie.pk), False)
        self.claim(self.charlie.pk, "charlie@example.org")
        self.assertIs(free_plan_claimed(user_id=self.charlie.pk), True)
        with self.assertRaisesMessage(FreePlanAlreadyClaimed, "already claimed the free plan"):
            self.claim(self.charlie.pk, "charlie@example.org")
        self.assertEqual(Subscription.objects.filter(user_id=self.charlie.pk).count(), 1)

    def test_the_claim_keeps_a_keyed_hash_of_the_address_never_the_address(self) -> None:
        self.claim(self.charlie.pk, "Charlie@Example.org")
        claim = FreePlanClaim.objects.get(user_id=self.charlie.pk)
        self.assertEqual(claim.email_hash, email_claim_hash("charlie@example.org"))
        self.assertEqual(len(claim.email_hash or ""), 64)
        row = FreePlanClaim.objects.filter(pk=claim.pk).values().get()
        self.assertNotIn("charlie", str(row).lower())

    def test_the_same_mailbox_cannot_claim_again_from_another_account(self) -> None:
        self.claim(self.charlie.pk, "j.doe+free@gmail.com")
        for variant in ("JDoe@googlemail.com", "jdoe@gmail.com", "j.d.o.e+again@gmail.com"):
            with self.subTest(variant=variant):
                self.assertIs(free_plan_claimed_by_email(email=variant), True)
                with self.assertRaisesMessage(FreePlanAlreadyClaimed, "once per person"):
                    self.claim(9_000_001, variant)
        self.assertIs(free_plan_claimed(user_id=9_000_001), False)
        # A different mailbox may claim.
        self.claim(9_000_002, "j.doe@example.org")

    def test_the_claim_outlives_the_account(self) -> None:
        charlie_id = self.charlie.pk
        self.claim(charlie_id, "charlie@example.org")
        user_delete_account(user=self.charlie)
        self.assertIs(FreePlanClaim.objects.filter(user_id=charlie_id).exists(), True)
        with self.assertRaises(FreePlanAlreadyClaimed):
            self.claim(9_000_003, "CHARLIE@example.org")

    def test_the_seeded_free_plan_is_what_a_claim_without_a_choice_gives(self) -> None:
        now = timezone.now()
        plan = plan_get_default_free()
        assert plan is not None
        sub = self.claim(self.charlie.pk, "charlie@example.org", plan)
        self.assertEqual((sub.plan.name, sub.traffic_limit_bytes), ("Free", 200_000_000))
        assert sub.expires_at is not None
        self.assertAlmostEqual((sub.expires_at - now).total_seconds(), 86_400, delta=60)

    def test_only_a_free_plan_can_be_claimed(self) -> None:
        with self.assertRaises(ValidationError):
            self.claim(self.charlie.pk, "charlie@example.org", self.plan)
        self.assertIs(free_plan_claimed_by_email(email="charlie@example.org"), False)


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
        assert sub.expires_at is not None
        self.assertGreater(sub.expires_at, timezone.now() + timedelta(days=1, hours=23))
        with self.assertRaises(ValidationError):
            subscription_extend(subscription=self.alice_sub, days=0)


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
                    traffic_delta(self.charlie.pk, 900, 0, 1, at),
                    traffic_delta(self.charlie.pk, 200, 0, 2, at + timedelta(seconds=1)),
                    traffic_delta(self.charlie.pk, 50, 0, 3, at + timedelta(seconds=2)),
                ]
            )
        self.assertEqual(result.restricted, [])
        new = current_subscription(self.charlie.pk)
        self.assertEqual((new.plan, new.status, new.bytes_up), (self.big, "active", 50))
        old = Subscription.objects.get(user_id=self.charlie.pk, plan=self.small)
        self.assertEqual((old.bytes_up, old.is_current), (1100, False))
        self.assertFalse(QueuedPlan.objects.exists())
        self.assertFalse(
            any(isinstance(e, schemas.RESTRICTION_TYPES) for e in user_events(self.charlie.pk))
        )
        self.assertIn(SubscriptionEventKind.RENEWED, history_kinds(old))

    def test_queued_plan_takes_over_at_expiry(self) -> None:
        services.plan_queue(user_id=self.charlie.pk, plan=self.big)
        with time_machine.travel(T0 + timedelta(days=10, seconds=1), tick=False):
            services.subscription_expire_due()
        new = current_subscription(self.charlie.pk)
        self.assertEqual((new.plan, new.started_at), (self.big, T0 + timedelta(days=10)))
        self.assertEqual(new.expires_at, T0 + timedelta(days=40))
        self.assertFalse(
            any(isinstance(e, schemas.RESTRICTION_TYPES) for e in user_events(self.charlie.pk))
        )

    def test_without_queue_expiry_restricts(self) -> None:
        with time_machine.travel(T0 + timedelta(days=10), tick=False):
            services.subscription_expire_due()
        sub = current_subscription(self.charlie.pk)
        self.assertEqual(sub.status, SubscriptionStatus.EXPIRED)
        self.assertEqual(history_kinds(sub)[-1], "expired")
        self.assertIsInstance(
            user_events(self.charlie.pk)[-1], schemas.UserConsumedTrafficWithoutPlan
        )

    def test_queue_on_an_expired_subscription_takes_over_at_once(self) -> None:
        with time_machine.travel(T0 + timedelta(days=11), tick=False):
            services.subscription_expire_due()
            sub = services.plan_queue(user_id=self.charlie.pk, plan=self.big)
        self.assertIsInstance(sub, Subscription)
        self.assertEqual(current_subscription(self.charlie.pk).plan, self.big)
        self.assertIsInstance(user_events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)

    def test_top_up_lifts_limited_until_the_period_ends(self) -> None:
        with time_machine.travel(T0 + timedelta(hours=1), tick=False):
            services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 1000, 0, 1, T0)])
        self.assertEqual(current_subscription(self.charlie.pk).status, "limited")
        sub = services.subscription_top_up(
            subscription=current_subscription(self.charlie.pk), bytes_=500
        )
        self.assertEqual(
            (sub.status, sub.traffic_limit_bytes, sub.topup_bytes), ("active", 1500, 500)
        )
        self.assertIsInstance(user_events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)
        sub = services.subscription_reset_usage(subscription=sub)
        self.assertEqual((sub.traffic_limit_bytes, sub.topup_bytes), (1000, 0))
        with self.assertRaisesMessage(ValidationError, "at least one byte"):
            services.subscription_top_up(subscription=sub, bytes_=0)

    def test_switch_keeps_usage_and_start(self) -> None:
        with time_machine.travel(T0 + timedelta(hours=1), tick=False):
            services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 1000, 0, 1, T0)])
            sub = services.subscription_switch(
                subscription=current_subscription(self.charlie.pk), plan=self.big
            )
        self.assertEqual((sub.plan, sub.status, sub.bytes_up), (self.big, "active", 1000))
        self.assertEqual((sub.started_at, sub.expires_at), (T0, T0 + timedelta(days=30)))
        self.assertEqual(sub.traffic_limit_bytes, 10_000)
        self.assertEqual(history_kinds(sub)[-1], "switched")

    def test_extend_disable_enable(self) -> None:
        with time_machine.travel(T0 + timedelta(days=1), tick=False):
            sub = services.subscription_extend(
                subscription=current_subscription(self.charlie.pk), days=5
            )
            self.assertEqual(sub.expires_at, T0 + timedelta(days=15))
            sub = services.subscription_disable(subscription=sub, reason="abuse")
            self.assertIsInstance(
                user_events(self.charlie.pk)[-1], schemas.UserConsumedTrafficWithoutPlan
            )
            sub = services.subscription_enable(subscription=sub)
        self.assertEqual(sub.status, "active")
        self.assertIsInstance(user_events(self.charlie.pk)[-1], schemas.PlanAssignedEvent)
        self.assertEqual(history_kinds(sub)[-3:], ["extended", "disabled", "enabled"])
        with self.assertRaisesMessage(ValidationError, "not disabled"):
            services.subscription_enable(subscription=sub)
