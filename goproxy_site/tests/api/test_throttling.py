"""API throttles read their rates from the settings on every request."""

from __future__ import annotations

from django.conf import settings
from django.test import override_settings

from goproxy_site.tests.base import ApiTestCase


def _rates(anon: str, user: str) -> dict[str, object]:
    return {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": anon, "user": user}}


class ThrottleTests(ApiTestCase):
    @override_settings(REST_FRAMEWORK=_rates(anon="3/minute", user="5/minute"))
    def test_anonymous_and_users_are_throttled(self) -> None:
        statuses = [self.client.get("/api/v1/plans/").status_code for _ in range(4)]
        self.assertEqual(statuses, [200, 200, 200, 429])
        response = self.client.get("/api/v1/plans/")
        self.assertIn("throttled", response.json()["detail"])
        self.assertIn("Retry-After", response)
        # Users are counted per user, not per address.
        self.login(self.alice)
        statuses = [self.client.get("/api/v1/me/").status_code for _ in range(6)]
        self.assertEqual(statuses, [200] * 5 + [429])
        self.login(self.bob)
        self.assertEqual(self.client.get("/api/v1/me/").status_code, 200)
