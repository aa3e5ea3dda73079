"""Shared test base with named personas (healthchecks' hc/test.py shape).

alice: on a plan with room left; bob: over his limit; charlie: no plan.
"""

from __future__ import annotations

from django.test import TestCase

from accounts.models import User
from accounts.services import credential_issue, user_create
from plans.models import Plan, Subscription, SubscriptionStatus
from plans.services import plan_assign


class BaseTestCase(TestCase):
    databases = {"default", "plans"}

    alice: User
    bob: User
    charlie: User
    plan: Plan

    @classmethod
    def setUpTestData(cls) -> None:
        cls.plan = Plan.objects.create(
            name="Basic", traffic_limit_bytes=1_000_000, duration_days=30, price="5.00"
        )
        cls.alice = user_create(username="alice", email="alice@example.org", password="pw-alice-1")
        cls.bob = user_create(username="bob", email="bob@example.org", password="pw-bob-1")
        cls.charlie = user_create(
            username="charlie", email="charlie@example.org", password="pw-charlie-1"
        )
        cls.alice_sub = plan_assign(user_id=cls.alice.pk, plan=cls.plan)
        cls.bob_sub = plan_assign(user_id=cls.bob.pk, plan=cls.plan)
        Subscription.objects.filter(pk=cls.bob_sub.pk).update(
            bytes_up=400_000, bytes_down=600_000, status=SubscriptionStatus.LIMITED
        )
        cls.alice_cred = credential_issue(user=cls.alice, login="alice-proxy")
