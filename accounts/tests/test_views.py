"""The self-service portal: dashboard, verification resend, credentials (issue, rotate,
revoke, each answered with a redirect), deletion."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from django.conf import settings
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import ProxyCredential, User
from accounts.selectors import credential_authenticate
from accounts.services import credential_issue, credential_revoke, user_create
from accounts.views import ISSUED_SECRET_TTL, ISSUED_SESSION_KEY
from goproxy_site.tests.base import BaseTestCase
from plans.models import Plan, Subscription, SubscriptionStatus, UsageBucket

STRONG_PASSWORD = "correct-horse-battery-9"


def secret_on_page(content: str) -> str:
    match = re.search(r'id="field-secret" type="text" readonly value="([^"]+)"', content)
    assert match, "the issued page shows the secret in #field-secret"
    return match.group(1)


class DashboardTests(BaseTestCase):
    def test_anonymous_is_sent_to_login(self) -> None:
        response = self.client.get(reverse("dashboard"))
        self.assertRedirects(response, f"{reverse('account_login')}?next={reverse('dashboard')}")

    def test_home_redirects_signed_in_users(self) -> None:
        self.client.force_login(self.alice)
        self.assertRedirects(self.client.get("/"), reverse("dashboard"))

    def test_home_lists_public_plans_for_visitors(self) -> None:
        Plan.objects.create(name="Hidden", is_public=False)
        response = self.client.get("/")
        self.assertContains(response, "Basic")
        self.assertContains(response, "Free")
        self.assertNotContains(response, "Hidden")
        self.assertNotContains(response, "Claim free plan")

    def test_plan_status_bar_and_expiry_in_human_units(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            bytes_up=150_000, bytes_down=270_000
        )
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(response, "Basic")
        self.assertContains(response, "420.0 KB of 1.0 MB (42 %)")
        self.assertContains(response, 'aria-valuenow="42"')
        self.assertContains(response, "150.0 KB")
        self.assertContains(response, "in 4\xa0weeks")
        self.assertContains(response, 'id="plan-status">Active<')

    def test_limited_user_sees_full_bar_and_note(self) -> None:
        self.client.force_login(self.bob)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(response, "1.0 MB of 1.0 MB (100 %)")
        self.assertContains(response, "You have used all the traffic")

    def test_chart_has_a_bar_per_direction_and_day_with_usage(self) -> None:
        today = timezone.now().replace(minute=0, second=0, microsecond=0)
        UsageBucket.objects.create(
            user_id=self.alice.pk,
            subscription=self.alice_sub,
            hour=today,
            bytes_up=1_500,
            bytes_down=9_000,
        )
        UsageBucket.objects.create(
            user_id=self.alice.pk,
            subscription=self.alice_sub,
            hour=today - timedelta(days=3),
            bytes_up=0,
            bytes_down=2_000,
        )
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        content = response.content.decode()
        self.assertEqual(content.count('class="bar bar--up"'), 1)
        self.assertEqual(content.count('class="bar bar--down"'), 2)
        self.assertIn('data-bytes="9000"', content)
        self.assertEqual(len(response.context["usage_rows"]), 30)
        self.assertContains(response, "1.5 KB up · 11.0 KB down")

    def test_an_unverified_address_is_asked_to_verify_and_can_get_the_link_again(self) -> None:
        dora = user_create(username="dora", email="dora@example.org", password="pw-dora-123")
        self.client.force_login(dora)
        page = self.client.get(reverse("dashboard"))
        self.assertContains(page, "Verify your e-mail address.")
        self.assertContains(page, reverse("email-verification-resend"))
        response = self.client.post(reverse("email-verification-resend"), follow=True)
        self.assertContains(response, "We sent a new verification link to dora@example.org.")
        self.assertEqual([m.to for m in mail.outbox], [["dora@example.org"]])
        link = re.search(
            r"http://testserver(/accounts/confirm-email/\S+)", str(mail.outbox[0].body)
        )
        assert link
        self.client.post(link.group(1))
        self.assertNotContains(self.client.get(reverse("dashboard")), "Verify your e-mail")
        again = self.client.post(reverse("email-verification-resend"), follow=True)
        self.assertContains(again, "dora@example.org is already verified.")
        self.assertEqual(len(mail.outbox), 1)

    def test_verified_users_see_no_banner(self) -> None:
        self.client.force_login(self.alice)
        self.assertNotContains(self.client.get(reverse("dashboard")), "Verify your e-mail")

    def test_claim_button_only_while_claimable(self) -> None:
        self.client.force_login(self.charlie)
        self.assertContains(self.client.get(reverse("dashboard")), "Claim free plan")
        self.client.force_login(self.alice)
        # Alice has a running paid plan: claiming would replace it.
        self.assertNotContains(self.client.get(reverse("dashboard")), "Claim free plan")


@override_settings(
    PROXY_PUBLIC_HOST="proxy.example.net",
    PROXY_PORT=3128,
    PORTAL_CURL_EXAMPLE_URL="https://example.com/",
)
class CredentialsTests(BaseTestCase):
    def test_issue_redirects_to_a_page_that_shows_the_secret_once(self) -> None:
        self.client.force_login(self.charlie)
        posted = self.client.post(reverse("credentials"), {"login": ""})
        self.assertEqual(posted.status_code, 302)
        self.assertTrue(posted["Location"].startswith("/credentials/issued/"))
        response = self.client.get(posted["Location"])
        self.assertEqual(response.status_code, 200)
        self.assertIn("no-store", response["Cache-Control"])
        credential = ProxyCredential.objects.get(user=self.charlie)
        secret = secret_on_page(response.content.decode())
        proxy_url = f"http://{credential.login}:{secret}@proxy.example.net:3128"
        self.assertContains(response, f'value="{proxy_url}"')
        self.assertContains(response, f"curl -x {proxy_url} https://example.com/")
        self.assertContains(response, 'data-copy-target="field-curl"')
        self.assertEqual(credential_authenticate(login=credential.login, secret=secret), credential)

        # Reloading shows it no more and issues nothing.
        reloaded = self.client.get(posted["Location"], follow=True)
        self.assertRedirects(reloaded, reverse("credentials"))
        self.assertContains(reloaded, "That secret was shown once and is not kept.")
        self.assertNotContains(reloaded, secret)
        self.assertEqual(ProxyCredential.objects.filter(user=self.charlie).count(), 1)
        self.assertNotIn(secret, str(dict(self.client.session)))

    def test_a_waiting_secret_is_sealed_in_the_session(self) -> None:
        self.client.force_login(self.charlie)
        location = self.client.post(reverse("credentials"), {"login": ""})["Location"]
        waiting = str(self.client.session[ISSUED_SESSION_KEY])
        secret = secret_on_page(self.client.get(location).content.decode())
        self.assertNotIn(secret, waiting)
        self.assertNotIn(ISSUED_SESSION_KEY, self.client.session)  # shown, so gone
        self.assertNotContains(self.client.get(reverse("dashboard")), secret)

    def test_a_held_secret_expires_unseen(self) -> None:
        self.client.force_login(self.charlie)
        location = self.client.post(reverse("credentials"), {"login": ""})["Location"]
        with time_machine.travel(timezone.now() + timedelta(seconds=ISSUED_SECRET_TTL + 1)):
            response = self.client.get(location, follow=True)
        self.assertContains(response, "shown once and is not kept")

    def test_another_users_issued_page_shows_nothing(self) -> None:
        self.client.force_login(self.charlie)
        location = self.client.post(reverse("credentials"), {"login": ""})["Location"]
        other = Client()
        other.force_login(self.bob)
        self.assertRedirects(other.get(location), reverse("credentials"))
        self.assertEqual(self.client.get(location).status_code, 200)

    def test_an_unverified_address_cannot_issue(self) -> None:
        dora = user_create(username="dora", email="dora@example.org", password="pw-dora-123")
        self.client.force_login(dora)
        page = self.client.get(reverse("credentials"))
        self.assertContains(page, "Send the link again")
        self.assertNotContains(page, "Issue credential</button>")
        response = self.client.post(reverse("credentials"), {"login": ""}, follow=True)
        self.assertRedirects(response, reverse("dashboard"))
        self.assertContains(response, "Verify your e-mail address first")
        self.assertIs(ProxyCredential.objects.filter(user=dora).exists(), False)

    def test_chosen_login_and_its_errors(self) -> None:
        self.client.force_login(self.charlie)
        response = self.client.post(reverse("credentials"), {"login": "charlie-home"}, follow=True)
        self.assertContains(response, "charlie-home")
        response = self.client.post(reverse("credentials"), {"login": "charlie-home"})
        self.assertContains(response, "This proxy login is already taken.")
        response = self.client.post(reverse("credentials"), {"login": "Bad Login!"})
        self.assertContains(response, "A proxy login is 3-64 characters")
        self.assertEqual(ProxyCredential.objects.filter(user=self.charlie).count(), 1)

    def test_rotate_asks_first_then_replaces_the_secret_once(self) -> None:
        self.client.force_login(self.alice)
        old = self.alice_cred
        url = reverse("credential-rotate", args=[old.credential.pk])
        confirm = self.client.get(url)
        self.assertContains(confirm, "Rotate the secret</button>")
        self.assertContains(confirm, "stops working at once")
        self.assertIsNotNone(credential_authenticate(login="alice-proxy", secret=old.secret))
        listing = self.client.get(reverse("credentials"))
        self.assertContains(listing, 'data-confirm="Rotate alice-proxy?')
        self.assertContains(listing, 'data-confirm="Revoke alice-proxy?')

        posted = self.client.post(url)
        self.assertEqual(posted.status_code, 302)
        new_secret = secret_on_page(self.client.get(posted["Location"]).content.decode())
        self.assertNotEqual(new_secret, old.secret)
        self.assertIsNone(credential_authenticate(login="alice-proxy", secret=old.secret))
        self.assertIsNotNone(credential_authenticate(login="alice-proxy", secret=new_secret))
        # Reloading the result does not rotate again: the secret just shown still works.
        self.client.get(posted["Location"])
        self.assertIsNotNone(credential_authenticate(login="alice-proxy", secret=new_secret))

    def test_revoke(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(
            reverse("credential-revoke", args=[self.alice_cred.credential.pk]), follow=True
        )
        self.assertContains(response, "Revoked alice-proxy; it no longer works.")
        self.assertContains(response, "Revoked</span>")
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )

    def test_other_users_credentials_are_404(self) -> None:
        self.client.force_login(self.bob)
        pk = self.alice_cred.credential.pk
        self.assertEqual(self.client.post(reverse("credential-rotate", args=[pk])).status_code, 404)
        self.assertEqual(self.client.get(reverse("credential-rotate", args=[pk])).status_code, 404)
        self.assertEqual(self.client.post(reverse("credential-revoke", args=[pk])).status_code, 404)
        self.assertIsNotNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )

    def test_a_revoked_credential_offers_no_rotation(self) -> None:
        self.client.force_login(self.alice)
        credential_revoke(credential=self.alice_cred.credential)
        url = reverse("credential-rotate", args=[self.alice_cred.credential.pk])
        response = self.client.get(url, follow=True)
        self.assertContains(response, "A revoked credential cannot be rotated.")
        self.assertContains(self.client.post(url, follow=True), "cannot be rotated")

    def test_live_credentials_are_capped(self) -> None:
        for i in range(settings.API_MAX_LIVE_CREDENTIALS):
            credential_issue(user=self.charlie, login=f"charlie-{i}")
        self.client.force_login(self.charlie)
        response = self.client.post(reverse("credentials"), {"login": ""})
        self.assertContains(response, "revoke one first")
        self.assertEqual(
            ProxyCredential.objects.filter(user=self.charlie).count(),
            settings.API_MAX_LIVE_CREDENTIALS,
        )


class AccountDeleteTests(BaseTestCase):
    def test_wrong_password_keeps_the_account(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(reverse("account-delete"), {"password": "wrong"})
        self.assertContains(response, "The password is not correct.")
        self.assertIs(User.objects.filter(pk=self.alice.pk).exists(), True)

    def test_delete_removes_user_and_credentials_and_ends_the_plan(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(
            reverse("account-delete"), {"password": "pw-alice-1"}, follow=True
        )
        self.assertRedirects(response, "/")
        self.assertContains(
            response, "The account alice@example.org and its credentials are deleted."
        )
        self.assertIs(User.objects.filter(pk=self.alice.pk).exists(), False)
        self.assertIs(ProxyCredential.objects.filter(login="alice-proxy").exists(), False)
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.status, SubscriptionStatus.DISABLED)
        self.assertNotIn("_auth_user_id", self.client.session)
