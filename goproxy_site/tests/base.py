"""Shared test bases with named personas (healthchecks' hc/test.py shape).

alice: on a plan with room left; bob: over his limit; charlie: no plan. Their e-mail
addresses are verified (dora, in the portal tests, is the one who has not verified hers).
ApiTestCase adds olga (staff) and API tokens; AdminTestCase adds a logged-in superuser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.admin import helpers
from django.test import TestCase
from django.test.client import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import IssuedCredential, api_token_issue, credential_issue, user_create
from goproxy_site.admin_actions import CONFIRM_FIELD
from plans.models import Plan, Subscription, SubscriptionStatus
from plans.services import plan_assign

if TYPE_CHECKING:  # the test client's response type, in django-stubs only
    from django.test.client import _MonkeyPatchedWSGIResponse


OPERATOR_PASSWORD = "pw-op-123"


class BaseTestCase(TestCase):
    databases = {"default", "plans"}

    alice: User
    bob: User
    charlie: User
    plan: Plan
    alice_sub: Subscription
    bob_sub: Subscription
    alice_cred: IssuedCredential

    @classmethod
    def setUpTestData(cls) -> None:
        cls.plan = Plan.objects.create(
            name="Basic", traffic_limit_bytes=1_000_000, duration_days=30, price="5.00"
        )
        cls.alice = user_create(
            username="alice", email="alice@example.org", password="pw-alice-1", email_verified=True
        )
        cls.bob = user_create(
            username="bob", email="bob@example.org", password="pw-bob-1", email_verified=True
        )
        cls.charlie = user_create(
            username="charlie",
            email="charlie@example.org",
            password="pw-charlie-1",
            email_verified=True,
        )
        cls.alice_sub = plan_assign(user_id=cls.alice.pk, plan=cls.plan)
        cls.bob_sub = plan_assign(user_id=cls.bob.pk, plan=cls.plan)
        Subscription.objects.filter(pk=cls.bob_sub.pk).update(
            bytes_up=400_000, bytes_down=600_000, status=SubscriptionStatus.LIMITED
        )
        cls.alice_cred = credential_issue(user=cls.alice, login="alice-proxy")


class ApiTestCase(BaseTestCase):
    """alice (plan), bob (over limit), charlie (no plan), olga (staff); token auth."""

    client_class = APIClient
    client: APIClient
    olga: User
    tokens: dict[int, str]

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.olga = user_create(
            username="olga",
            email="olga@example.org",
            password="pw-olga-1",
            is_staff=True,
            email_verified=True,
        )
        cls.tokens = {
            user.pk: api_token_issue(user=user)[0]
            for user in (cls.alice, cls.bob, cls.charlie, cls.olga)
        }

    def login(self, user: User | None) -> None:
        """Send the user's token on every request (None = anonymous)."""
        if user is None:
            self.client.credentials()
        else:
            self.client.credentials(HTTP_AUTHORIZATION=f"Token {self.tokens[user.pk]}")


class AdminTestCase(BaseTestCase):
    """The personas plus `operator` (OPERATOR_PASSWORD, verified e-mail), a superuser
    logged in to the admin."""

    client: Client
    operator: User

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.operator = user_create(
            username="op",
            email="op@example.org",
            password=OPERATOR_PASSWORD,
            is_staff=True,
            is_superuser=True,
            email_verified=True,
        )

    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.operator)

    def act(
        self, action: str, users: list[User], *, confirmed: bool = False, **extra: str
    ) -> _MonkeyPatchedWSGIResponse:
        """Run a user-admin action on `users` from the user changelist; `confirmed`
        answers the confirmation page of a destructive action in the same POST."""
        data = {
            "action": action,
            helpers.ACTION_CHECKBOX_NAME: [str(u.pk) for u in users],
            **({CONFIRM_FIELD: "yes"} if confirmed else {}),
            **extra,
        }
        return self.client.post(reverse("admin:accounts_user_changelist"), data, follow=True)
