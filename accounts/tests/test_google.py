"""Sign in with Google: allauth's Google provider, unchanged, against a local stand-in
for Google's OAuth2/OIDC endpoints (authorization redirect, token endpoint with PKCE and
an RS256 id_token, userinfo)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.test import Client, TestCase, override_settings
from django.urls import reverse

from accounts.models import User
from accounts.selectors import user_email_verified
from accounts.services import user_create, user_deactivate
from goproxy_site.tests.support.google import GoogleStandIn

CLIENT_ID = "goproxy-test.apps.googleusercontent.com"
CLIENT_SECRET = "stand-in-secret"


def google_enabled() -> dict[str, Any]:
    google = settings.SOCIALACCOUNT_PROVIDERS["google"]
    return {
        **settings.SOCIALACCOUNT_PROVIDERS,
        "google": {**google, "APPS": [{"client_id": CLIENT_ID, "secret": CLIENT_SECRET}]},
    }


def sign_in(client: Client) -> Any:
    """The browser's part: start at the portal, visit Google, come back with the code."""
    start = client.post(reverse("google_login"))
    assert start.status_code == 302, start.content
    authorize = start["Location"]
    assert authorize.startswith(f"{settings.GOOGLE_STANDIN_URL}/o/oauth2/v2/auth?")
    at_google = requests.get(authorize, allow_redirects=False, timeout=10)
    assert at_google.status_code == 302, at_google.text
    back = urlsplit(at_google.headers["Location"])
    return client.get(f"{back.path}?{back.query}", follow=True)


@override_settings(SOCIALACCOUNT_PROVIDERS=google_enabled())
class GoogleSignInTests(TestCase):
    databases = {"default", "plans"}
    google: GoogleStandIn

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.google = GoogleStandIn(
            settings.GOOGLE_STANDIN_PORT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        ).start()
        cls.addClassCleanup(cls.google.stop)

    def test_a_new_google_user_gets_an_account_with_a_verified_address(self) -> None:
        self.google.sign_in_as(email="Gina.Lopez@gmail.com")
        response = sign_in(self.client)
        self.assertEqual(response.redirect_chain[-1][0], reverse("dashboard"))
        user = User.objects.get(email__iexact="gina.lopez@gmail.com")
        self.assertEqual(response.context["user"], user)
        self.assertEqual(user.username, "gina.lopez@gmail.com")
        self.assertIs(user.has_usable_password(), False)
        self.assertIs(user_email_verified(user_id=user.pk), True)
        self.assertEqual(SocialAccount.objects.get(user=user).provider, "google")
        self.assertNotContains(response, "Verify your e-mail")
        # The real flow ran: PKCE, the scopes allauth's provider asks for, the client id.
        request = self.google.authorize_requests[-1]
        self.assertEqual(request["client_id"], CLIENT_ID)
        self.assertEqual(request["code_challenge_method"], "S256")
        self.assertEqual(set(request["scope"].split()), {"openid", "email", "profile"})

    def test_signing_in_again_finds_the_same_account(self) -> None:
        self.google.sign_in_as(email="repeat@gmail.com", sub="1234567890")
        sign_in(self.client)
        self.client.logout()
        sign_in(self.client)
        self.assertEqual(User.objects.filter(email="repeat@gmail.com").count(), 1)
        self.assertIn("_auth_user_id", self.client.session)

    def test_an_address_google_has_not_verified_stays_unverified(self) -> None:
        self.google.sign_in_as(email="unsure@example.org", verified=False)
        response = sign_in(self.client)
        user = User.objects.get(email="unsure@example.org")
        self.assertIs(user_email_verified(user_id=user.pk), False)
        self.assertContains(response, "Verify your e-mail address.")

    def test_google_verifying_an_existing_address_signs_in_to_that_account(self) -> None:
        # Someone registered the address with a password but never verified it; whoever
        # really owns it signs in with Google. The account is theirs now: its address is
        # verified and the stranger's password no longer works.
        owner = user_create(username="hal", email="hal@example.org", password="pw-stranger-1")
        self.google.sign_in_as(email="hal@example.org")
        response = sign_in(self.client)
        self.assertEqual(response.context["user"], owner)
        owner.refresh_from_db()
        self.assertIs(user_email_verified(user_id=owner.pk), True)
        self.assertIs(owner.has_usable_password(), False)
        self.assertEqual(EmailAddress.objects.filter(user=owner).count(), 1)

    def test_a_disabled_account_is_told_so(self) -> None:
        ivy = user_create(username="ivy", email="ivy@example.org", email_verified=True)
        user_deactivate(user=ivy)
        self.google.sign_in_as(email="ivy@example.org")
        response = sign_in(self.client)
        self.assertContains(response, "This account is disabled — contact support at")
        self.assertNotIn("_auth_user_id", self.client.session)

    def test_a_forged_callback_is_refused(self) -> None:
        self.google.sign_in_as(email="forged@example.org")
        start = self.client.post(reverse("google_login"))
        state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
        response = self.client.get(reverse("google_callback"), {"code": "made-up", "state": state})
        self.assertContains(response, "Third-Party Login Failure", status_code=401)
        self.assertIs(User.objects.filter(email="forged@example.org").exists(), False)

    def test_the_login_page_offers_google(self) -> None:
        self.assertContains(self.client.get(reverse("account_login")), "Continue with Google")


class GoogleOffTests(TestCase):
    def test_google_is_off_without_configuration(self) -> None:
        self.assertEqual(settings.SOCIALACCOUNT_PROVIDERS["google"]["APPS"], [])
        self.assertNotContains(self.client.get(reverse("account_login")), "Google")
        self.assertEqual(self.client.post(reverse("google_login")).status_code, 404)
        self.assertEqual(self.client.get(reverse("google_callback")).status_code, 404)
