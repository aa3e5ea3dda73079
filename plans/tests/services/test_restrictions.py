"""The proxy-facing state: restrictions and lifts published once per transition, with
versions.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB
from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import (
    Subscription,
    SubscriptionStatus,
    UserRestriction,
)
from plans.services.restrictions import restriction_lift, restriction_set, throttle_set
from plans.tests.factories import (
    outbox_events,
    restriction_events,
    traffic_delta,
)


class RestrictionTransitionTests(BaseTestCase):
    def test_plan_assign_lifts_with_a_newer_version(self) -> None:
        services.traffic_apply_batch(deltas=[traffic_delta(self.charlie.pk, 1, 1, 1)])
        restricted = UserRestriction.objects.get(user_id=self.charlie.pk)
        sub = services.plan_assign(user_id=self.charlie.pk, plan=self.plan)
        lifted = UserRestriction.objects.get(user_id=self.charlie.pk)
        self.assertEqual(lifted.reason, "")
        self.assertGreater(lifted.version, restricted.version)
        last = outbox_events()[-1]
        assert isinstance(last, schemas.PlanAssignedEvent)
        self.assertEqual(
            (last.user_id, last.subscription_id, last.restriction_version),
            (self.charlie.pk, sub.pk, lifted.version),
        )

    def test_expire_due_sweeps_idle_users_once(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
        self.assertEqual(services.subscription_expire_due(), [self.alice.pk])
        self.assertEqual(services.subscription_expire_due(), [])
        self.assertEqual(
            Subscription.objects.get(pk=self.alice_sub.pk).status, SubscriptionStatus.EXPIRED
        )
        [event] = restriction_events()
        self.assertEqual(event.reason, schemas.REASON_EXPIRED)

    def test_renewal_of_expired_subscription_lifts(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
        services.subscription_expire_due()
        services.subscription_extend(subscription=self.alice_sub, days=30)
        assert isinstance(outbox_events()[-1], schemas.PlanAssignedEvent)
        self.assertIs(UserRestriction.objects.get(user_id=self.alice.pk).is_restricted, False)

    def test_disable_restricts_and_reset_usage_lifts(self) -> None:
        services.subscription_disable(subscription=self.alice_sub)
        self.assertEqual(restriction_events()[-1].reason, schemas.REASON_DISABLED)
        services.traffic_apply_batch(deltas=[traffic_delta(self.bob.pk, 1, 0, 1)])
        services.subscription_reset_usage(subscription=self.bob_sub)
        assert isinstance(outbox_events()[-1], schemas.PlanAssignedEvent)
        self.assertIs(UserRestriction.objects.get(user_id=self.bob.pk).is_restricted, False)


class RestrictionStateTests(BaseTestCase):
    """Each change of the proxy-facing state bumps the version and queues one event."""

    def state(self, user_id: int) -> tuple[str, int | None, int]:
        row = UserRestriction.objects.get(user_id=user_id)
        return row.reason, row.throttle_bps, row.version

    def test_a_repeated_state_publishes_nothing(self) -> None:
        before = len(outbox_events())
        with transaction.atomic(using=PLANS_DB):
            self.assertIs(restriction_set(user_id=self.charlie.pk, reason="no_plan"), True)
            self.assertIs(restriction_set(user_id=self.charlie.pk, reason="no_plan"), False)
        self.assertEqual(self.state(self.charlie.pk), ("no_plan", None, 1))
        self.assertEqual(len(outbox_events()), before + 1)
        with transaction.atomic(using=PLANS_DB):
            self.assertIs(throttle_set(user_id=self.charlie.pk, speed_bps=1000), True)
            self.assertIs(throttle_set(user_id=self.charlie.pk, speed_bps=1000), False)
        self.assertEqual(self.state(self.charlie.pk), ("", 1000, 2))
        [*_, throttled] = outbox_events()
        assert isinstance(throttled, schemas.UserThrottledEvent)
        self.assertEqual((throttled.speed_bps, throttled.restriction_version), (1000, 2))

    def test_a_lift_always_publishes_the_plan(self) -> None:
        _, _, version = self.state(self.alice.pk)
        with transaction.atomic(using=PLANS_DB):
            restriction_lift(subscription=self.alice_sub)
            restriction_lift(subscription=self.alice_sub)
        self.assertEqual(self.state(self.alice.pk), ("", None, version + 2))
        lifts = [e for e in outbox_events() if isinstance(e, schemas.PlanAssignedEvent)]
        self.assertEqual([e.restriction_version for e in lifts[-2:]], [version + 1, version + 2])
        self.assertEqual(lifts[-1].plan_id, self.plan.pk)

    def test_the_event_type_follows_the_reason(self) -> None:
        with transaction.atomic(using=PLANS_DB):
            restriction_set(user_id=self.charlie.pk, reason="limit")
            restriction_set(user_id=self.charlie.pk, reason="expired")
        limit, expired = restriction_events()[-2:]
        assert isinstance(limit, schemas.UserExceededTrafficLimitEvent)
        assert isinstance(expired, schemas.UserConsumedTrafficWithoutPlan)
        self.assertEqual((expired.reason, expired.restriction_version), ("expired", 2))
