"""The admin's door: operators sign in through the portal's login, and with
ADMIN_REQUIRE_2FA only with a TOTP (or recovery-code) check in the session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from datetime import timedelta
from urllib.parse import urlsplit

import time_machine
from allauth.mfa.models import Authenticator
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from goproxy_site.tests.base import OPERATOR_PASSWORD, AdminTestCase

PASSWORD = OPERATOR_PASSWORD


def totp(secret: str, at: float | None = None) -> str:
    """RFC 6238 (SHA-1, 30 s, 6 digits): what an authenticator app shows."""
    counter = int((time.time() if at is None else at) // 30)
    key = base64.b32decode(secret, casefold=True)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def path_of(response) -> str:
    return urlsplit(response["Location"]).path


class AdminLoginTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.logout()  # these tests come through the door themselves

    def login(self, client: Client | None = None) -> Client:
        client = client or self.client
        response = client.post(
            f"{reverse('account_login')}?next=/admin/",
            {"login": "op@example.org", "password": PASSWORD},
        )
        self.assertEqual(response.status_code, 302, response.content)
        return client

    def test_the_admin_login_is_the_portal_login(self) -> None:
        response = self.client.get("/admin/", follow=True)
        self.assertEqual(
            response.redirect_chain[-1][0], f"{reverse('account_login')}?next=%2Fadmin%2F"
        )
        self.assertContains(response, "E-mail address")

    def test_without_the_requirement_an_operator_opens_the_admin_after_login(self) -> None:
        self.login()
        self.assertEqual(self.client.get("/admin/").status_code, 200)

    def test_people_who_are_not_staff_stay_out(self) -> None:
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get("/admin/", follow=True).status_code, 403)

    @override_settings(ADMIN_REQUIRE_2FA=True)
    def test_with_the_requirement_an_operator_sets_up_totp_then_confirms_a_code(self) -> None:
        self.login()
        sent = self.client.get("/admin/")
        self.assertEqual(path_of(sent), reverse("mfa_activate_totp"))
        # allauth asks for the password again before a second factor is added.
        reauth = self.client.get(sent["Location"])
        self.assertEqual(path_of(reauth), reverse("account_reauthenticate"))
        back = self.client.post(reauth["Location"], {"password": PASSWORD})
        self.assertEqual(back["Location"], sent["Location"])
        page = self.client.get(sent["Location"])
        self.assertContains(page, "requires two-factor authentication")
        secret = page.context["form"].secret
        activated = self.client.post(sent["Location"], {"code": totp(secret)})
        self.assertEqual(path_of(activated), reverse("mfa_view_recovery_codes"))
        codes = self.client.get(activated["Location"]).context["unused_codes"]
        self.assertEqual(len(codes), 10)
        self.assertIs(Authenticator.objects.filter(user=self.operator, type="totp").exists(), True)

        # Setting up TOTP is not a check of it: the admin asks for a code.
        ask = self.client.get("/admin/")
        self.assertEqual(path_of(ask), reverse("mfa_reauthenticate"))
        wrong = self.client.post(ask["Location"], {"code": "000000"})
        self.assertContains(wrong, "Incorrect code")
        self.assertEqual(self.client.get("/admin/").status_code, 302)
        # A recovery code does it once; then the admin opens.
        self.client.post(ask["Location"], {"code": codes[0]})
        self.assertEqual(self.client.get("/admin/").status_code, 200)

        # Next sign-in: the code is asked at login, and the admin opens straight away.
        other = Client()
        with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=True):
            stage = other.post(
                f"{reverse('account_login')}?next=/admin/",
                {"login": "op@example.org", "password": PASSWORD},
            )
            self.assertEqual(path_of(stage), reverse("mfa_authenticate"))
            self.assertNotIn("_auth_user_id", other.session)
            done = other.post(stage["Location"], {"code": totp(secret)})
            self.assertEqual(done["Location"], "/admin/")
            self.assertEqual(other.get("/admin/").status_code, 200)

    @override_settings(ADMIN_REQUIRE_2FA=True)
    def test_with_the_requirement_the_portal_still_works_without_totp(self) -> None:
        self.login()
        self.assertEqual(self.client.get(reverse("dashboard")).status_code, 200)
