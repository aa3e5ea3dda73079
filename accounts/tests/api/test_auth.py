from __future__ import annotations

import io

from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import user_create

from .base import ApiTestCase


def _rates(anon: str, user: str) -> dict[str, object]:
    return {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": anon, "user": user}}


class SessionAuthTests(ApiTestCase):
    def test_session_login_works_and_csrf_is_enforced(self) -> None:
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(self.charlie)
        self.assertEqual(client.get("/api/v1/me/").json()["username"], "charlie")
        response = client.post("/api/v1/me/credentials/", {}, format="json")
        self.assertEqual(response.status_code, 403)
        self.assertIn("CSRF", response.json()["detail"])
        # With the CSRF cookie and header the same request goes through.
        client.get("/admin/login/")
        token = client.cookies["csrftoken"].value
        response = client.post("/api/v1/me/credentials/", {}, format="json", HTTP_X_CSRFTOKEN=token)
        self.assertEqual(response.status_code, 201, response.content)

    def test_token_auth_needs_no_csrf(self) -> None:
        client = APIClient(enforce_csrf_checks=True)
        client.credentials(HTTP_AUTHORIZATION=f"Token {self.tokens[self.charlie.pk]}")
        self.assertEqual(client.post("/api/v1/me/credentials/", {}, format="json").status_code, 201)


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


class CreateApiTokenCommandTests(ApiTestCase):
    def _run(self, *args: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        call_command("create_api_token", *args, stdout=out, stderr=err)
        return out.getvalue().strip()

    def test_it_prints_a_working_token(self) -> None:
        user_create(username="ops-bot", email="ops@example.org", is_staff=True)
        key = self._run("ops-bot")
        self.assertEqual(self._run("ops-bot"), key)
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        self.assertEqual(self.client.get("/api/v1/users/").status_code, 200)

    def test_reset_replaces_the_token(self) -> None:
        old = self.tokens[self.alice.pk]
        new = self._run("alice", "--reset")
        self.assertNotEqual(new, old)
        self.assertIs(Token.objects.filter(key=old).exists(), False)
        self.login(self.alice)
        self.assertEqual(self.client.get("/api/v1/me/").status_code, 401)

    def test_unknown_and_inactive_users_are_refused(self) -> None:
        with self.assertRaisesMessage(CommandError, "No user named 'nobody'"):
            self._run("nobody")
        gone = user_create(username="gone", email="gone@example.org")
        User.objects.filter(pk=gone.pk).update(is_active=False)
        with self.assertRaisesMessage(CommandError, "only be issued to active users"):
            self._run("gone")


class NotFoundTests(ApiTestCase):
    def test_unknown_api_paths_are_json_404(self) -> None:
        for path in ("/api/v1/nope/", "/api/v1/users", "/api/v1/me/subscription/x/"):
            with self.subTest(path=path):
                response = self.client.post(path, {}, format="json")
                self.assertEqual(response.status_code, 404)
                self.assertEqual(response["Content-Type"], "application/json")
                self.assertIn("Not found", response.json()["detail"])
        self.assertIn("try /api/v1/users/", self.client.get("/api/v1/users").json()["detail"])

    def test_wrong_method_is_json_405(self) -> None:
        self.login(self.alice)
        response = self.client.delete("/api/v1/me/")
        self.assertEqual(response.status_code, 405)
        self.assertIn("detail", response.json())
