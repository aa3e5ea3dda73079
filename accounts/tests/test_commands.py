"""Management commands of accounts: `create_api_token`."""

from __future__ import annotations

import io

from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from accounts.models import User
from accounts.services import user_create
from goproxy_site.tests.base import ApiTestCase


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
