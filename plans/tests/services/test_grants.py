"""Quota grants: the ledger never lets the proxies together hold more than is left."""

from __future__ import annotations

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

from accounts.services import user_create
from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import Plan, QuotaAction, QuotaGrantLedger, Subscription, SubscriptionStatus
from plans.tests.factories import traffic_delta

MB = 1_000_000


def request(
    user_id: int, instance: str, request_id: int, *, want: int, held: int = 0
) -> schemas.QuotaGrantRequest:
    return schemas.QuotaGrantRequest(
        user_id=user_id,
        instance_id=instance,
        request_id=request_id,
        held_bytes=held,
        want_bytes=want,
    )


class GrantLedgerTests(BaseTestCase):
    """alice has a 1 MB plan with nothing used; bob is limited; charlie has no plan."""

    def ask(self, *requests: schemas.QuotaGrantRequest, deltas=(), returns=()) -> list:
        result = services.traffic_apply_batch(
            deltas=list(deltas), grant_requests=list(requests), grant_returns=list(returns)
        )
        self.assertEqual(result.rejected, [])
        return result.answers

    def held(self, user_id: int) -> dict[str, int]:
        return dict(
            QuotaGrantLedger.objects.filter(user_id=user_id).values_list(
                "instance_id", "held_bytes"
            )
        )

    def test_a_grant_is_at_most_what_is_left(self) -> None:
        [answer] = self.ask(request(self.alice.pk, "px-a", 1, want=5 * MB))
        self.assertEqual((answer.mode, answer.granted_bytes), (schemas.GRANT_QUOTA, MB))
        self.assertEqual((answer.instance_id, answer.request_id), ("px-a", 1))
        self.assertEqual(answer.valid_for_ms, 10_000)
        self.assertGreater(answer.plan_ends_in_ms, 29 * 24 * 3600 * 1000)
        self.assertEqual(self.held(self.alice.pk), {"px-a": MB})

    def test_two_proxies_share_the_quota(self) -> None:
        [a] = self.ask(request(self.alice.pk, "px-a", 1, want=800_000))
        [b] = self.ask(request(self.alice.pk, "px-b", 1, want=800_000))
        self.assertEqual((a.granted_bytes, b.granted_bytes), (800_000, 200_000))
        [again] = self.ask(request(self.alice.pk, "px-b", 2, want=100, held=200_000))
        self.assertEqual(again.granted_bytes, 0)  # all of it is held: ask again shortly

    def test_bytes_spent_come_off_what_the_proxy_holds_and_returns_free_the_rest(self) -> None:
        self.ask(request(self.alice.pk, "px-a", 1, want=800_000))
        spent = traffic_delta(self.alice.pk, 100_000, 200_000, 1, instance="px-a")
        self.ask(deltas=[spent])
        self.assertEqual(self.held(self.alice.pk), {"px-a": 500_000})
        [b] = self.ask(request(self.alice.pk, "px-b", 1, want=MB))
        self.assertEqual(b.granted_bytes, 200_000)  # 1 MB - 300 kB used - 500 kB at px-a
        back = schemas.QuotaGrantReturn(
            user_id=self.alice.pk, instance_id="px-a", request_id=1, returned_bytes=500_000
        )
        self.ask(returns=[back])
        [b2] = self.ask(request(self.alice.pk, "px-b", 2, want=MB, held=200_000))
        self.assertEqual(b2.granted_bytes, 500_000)
        self.assertEqual(self.held(self.alice.pk), {"px-a": 0, "px-b": 700_000})

    def test_a_silent_proxys_grant_returns_to_the_pool_after_validity_and_grace(self) -> None:
        self.ask(request(self.alice.pk, "px-dead", 1, want=MB))
        [none] = self.ask(request(self.alice.pk, "px-b", 1, want=MB))
        self.assertEqual(none.granted_bytes, 0)
        QuotaGrantLedger.objects.filter(instance_id="px-dead").update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        [b] = self.ask(request(self.alice.pk, "px-b", 2, want=MB))
        self.assertEqual(b.granted_bytes, MB)

    def test_a_redelivered_request_is_not_answered_twice(self) -> None:
        first = request(self.alice.pk, "px-a", 1, want=400_000)
        self.assertEqual(len(self.ask(first)), 1)
        self.assertEqual(self.ask(first), [])
        self.assertEqual(self.held(self.alice.pk), {"px-a": 400_000})

    def test_deltas_in_the_same_batch_count_before_the_request(self) -> None:
        deltas = [traffic_delta(self.alice.pk, 600_000, 400_000, 1, instance="px-a")]
        [answer] = self.ask(request(self.alice.pk, "px-a", 1, want=MB), deltas=deltas)
        self.assertEqual((answer.mode, answer.reason), (schemas.GRANT_REFUSED, "limit"))
        self.assertEqual(
            Subscription.objects.get(pk=self.alice_sub.pk).status, SubscriptionStatus.LIMITED
        )

    def test_the_answer_follows_the_plan(self) -> None:
        unlimited = Plan.objects.create(name="Unlimited", duration_days=30)
        throttling = Plan.objects.create(
            name="Throttling",
            traffic_limit_bytes=MB,
            duration_days=30,
            quota_action=QuotaAction.THROTTLE,
            throttle_speed_bps=50_000,
        )
        dave = self.make_user("dave", unlimited)
        erin = self.make_user("erin", throttling)
        Subscription.objects.filter(user_id=erin, is_current=True).update(
            status=SubscriptionStatus.LIMITED, bytes_down=MB
        )
        answers = {
            a.user_id: a
            for a in self.ask(
                request(dave, "px", 1, want=MB),
                request(erin, "px", 1, want=MB),
                request(self.bob.pk, "px", 1, want=MB),
                request(self.charlie.pk, "px", 1, want=MB),
            )
        }
        self.assertEqual(answers[dave].mode, schemas.GRANT_UNLIMITED)
        self.assertEqual((answers[erin].mode, answers[erin].speed_bps), ("throttle", 50_000))
        self.assertEqual(
            (answers[self.bob.pk].mode, answers[self.bob.pk].reason), ("refused", "limit")
        )
        self.assertEqual(answers[self.charlie.pk].reason, "no_plan")

    def test_a_plan_ending_soon_says_when(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() + timedelta(seconds=5)
        )
        [answer] = self.ask(request(self.alice.pk, "px", 1, want=10))
        self.assertTrue(4000 < answer.plan_ends_in_ms <= 5000, answer.plan_ends_in_ms)
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1), status=SubscriptionStatus.EXPIRED
        )
        [late] = self.ask(request(self.alice.pk, "px", 2, want=10))
        self.assertEqual((late.mode, late.reason), ("refused", "expired"))

    @override_settings(PLANS_GRANT_TOLERANCE_BYTES=50_000)
    def test_the_tolerance_lets_the_proxies_hold_that_much_more(self) -> None:
        [answer] = self.ask(request(self.alice.pk, "px", 1, want=5 * MB))
        self.assertEqual(answer.granted_bytes, MB + 50_000)

    def test_bad_requests_are_rejected_with_the_reason(self) -> None:
        result = services.traffic_apply_batch(
            deltas=[],
            grant_requests=[
                request(self.alice.pk, "px", 0, want=1),
                request(self.alice.pk, "px", 1, want=-1),
                request(987654, "px", 1, want=1),
            ],
        )
        reasons = " | ".join(sorted(reason for _e, reason in result.rejected))
        self.assertEqual(len(result.rejected), 3, reasons)
        for expected in ("request_id must be positive", "negative bytes", "unknown user 987654"):
            self.assertIn(expected, reasons)
        self.assertEqual(result.answers, [])

    def make_user(self, name: str, plan: Plan) -> int:
        user = user_create(username=name, email=f"{name}@example.org")
        services.plan_assign(user_id=user.pk, plan=plan)
        return user.pk
