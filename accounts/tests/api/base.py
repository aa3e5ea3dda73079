"""Shared base for API tests: the personas of BaseTestCase plus an operator, with tokens."""

from __future__ import annotations

from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_token_issue, user_create
from goproxy_site.tests.base import BaseTestCase


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
            username="olga", email="olga@example.org", password="pw-olga-1", is_staff=True
        )
        cls.tokens = {
            user.pk: api_token_issue(user=user)[0]
            for user in (cls.alice, cls.bob, cls.charlie, cls.olga)
        }

    def setUp(self) -> None:
        # Throttle counters live in the cache; each test starts from zero.
        cache.clear()

    def login(self, user: User | None) -> None:
        """Send the user's token on every request (None = anonymous)."""
        if user is None:
            self.client.credentials()
        else:
            self.client.credentials(HTTP_AUTHORIZATION=f"Token {self.tokens[user.pk]}")
