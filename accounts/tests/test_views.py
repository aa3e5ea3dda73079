"""The self-service portal: signup, login, password reset, dashboard, credentials, deletion."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.core import mail
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import ProxyCredential, User
from accounts.selectors import credential_authenticate
from accounts.services import credential_issue
from goproxy_site.tests.base import BaseTestCase
from plans.models import Plan, Subscription, SubscriptionStatus, UsageBucket

STRONG_PASSWORD = "correct-horse-battery-9"


def secret_on_page(content: str) -> str:
    match = re.search(r'id="field-secret" type="text" readonly value="([^"]+)"', content)
    assert match, "the issued page shows the secret in #field-secret"
    return match.group(1)


class SignupTests(BaseTestCase):
    def test_page_has_labelled_fields(self) -> None:
        response = self.client.get(reverse("signup"))
        self.assertContains(response, '<label for="id_email"')
        self.assertContains(response, '<label for="id_password1"')
        self.assertContains(response, '<label for="id_password2"')

    def test_it_creates_a_user_and_logs_in(self) -> None:
        response = self.client.post(
            reverse("signup"),
            {
                "email": "New.Person@Example.ORG",
                "password1": STRONG_PASSWORD,
                "password2": STRONG_PASSWORD,
            },
            follow=True,
        )
        self.assertRedirects(response, reverse("dashboard"))
        user = User.objects.get(email__iexact="new.person@example.org")
        self.assertEqual(user.username, "new.person@example.org")
        self.assertIs(user.check_password(STRONG_PASSWORD), True)
        self.assertEqual(response.context["user"], user)
        self.assertContains(response, "Welcome! Your account is ready.")

    def test_weak_password_is_refused_with_validator_messages(self) -> None:
        response = self.client.post(
            reverse("signup"),
            {"email": "weak@example.org", "password1": "password", "password2": "password"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "This password is too common.")
        self.assertIs(User.objects.filter(email="weak@example.org").exists(), False)

    def test_password_similar_to_email_is_refused(self) -> None:
        response = self.client.post(
            reverse("signup"),
            {
                "email": "zebracorn@example.org",
                "password1": "zebracorn1",
                "password2": "zebracorn1",
            },
        )
        self.assertContains(response, "too similar")

    def test_mismatched_passwords(self) -> None:
        response = self.client.post(
            reverse("signup"),
            {"email": "x@example.org", "password1": STRONG_PASSWORD, "password2": "other-one-123"},
        )
        self.assertContains(response, "The two passwords do not match.")
        self.assertContains(response, 'aria-invalid="true"')

    def test_duplicate_email_any_case(self) -> None:
        response = self.client.post(
            reverse("signup"),
            {
                "email": "ALICE@example.org",
                "password1": STRONG_PASSWORD,
                "password2": STRONG_PASSWORD,
            },
        )
        self.assertContains(response, "A user with this e-mail address already exists.")
        self.assertEqual(User.objects.filter(email__iexact="alice@example.org").count(), 1)

    def test_invalid_email(self) -> None:
        response = self.client.post(
            reverse("signup"),
            {"email": "not-an-email", "password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD},
        )
        self.assertContains(response, "Enter a valid email address.")


class LoginTests(BaseTestCase):
    def test_email_login_ignores_case(self) -> None:
        user = User.objects.create_user(
            username="dora@example.org", email="dora@example.org", password=STRONG_PASSWORD
        )
        response = self.client.post(
            reverse("login"), {"username": "Dora@Example.org", "password": STRONG_PASSWORD}
        )
        self.assertRedirects(response, reverse("home"), target_status_code=302)
        self.assertEqual(int(self.client.session["_auth_user_id"]), user.pk)

    def test_wrong_password_shows_error(self) -> None:
        response = self.client.post(
            reverse("login"), {"username": "alice", "password": "nope-nope"}
        )
        self.assertContains(response, "Please enter a correct")

    def test_logout_is_a_post(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(reverse("logout"))
        self.assertRedirects(response, "/", fetch_redirect_response=False)
        self.assertNotIn("_auth_user_id", self.client.session)


class PasswordTests(BaseTestCase):
    def test_reset_by_email_then_login_with_new_password(self) -> None:
        response = self.client.post(reverse("password_reset"), {"email": "alice@example.org"})
        self.assertRedirects(response, reverse("password_reset_done"))
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["alice@example.org"])
        link = re.search(r"http://testserver(/accounts/reset/\S+)", str(mail.outbox[0].body))
        assert link
        response = self.client.get(link.group(1), follow=True)
        self.assertContains(response, "Choose a new password")
        response = self.client.post(
            response.redirect_chain[-1][0],
            {"new_password1": STRONG_PASSWORD, "new_password2": STRONG_PASSWORD},
        )
        self.assertRedirects(response, reverse("password_reset_complete"))
        self.assertIs(self.client.login(username="alice", password=STRONG_PASSWORD), True)

    def test_reset_for_unknown_email_sends_nothing_and_says_the_same(self) -> None:
        response = self.client.post(
            reverse("password_reset"), {"email": "nobody@example.org"}, follow=True
        )
        self.assertContains(response, "Check your e-mail")
        self.assertEqual(mail.outbox, [])

    def test_change_password(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(
            reverse("password_change"),
            {
                "old_password": "pw-alice-1",
                "new_password1": STRONG_PASSWORD,
                "new_password2": STRONG_PASSWORD,
            },
        )
        self.assertRedirects(response, reverse("password_change_done"))
        self.alice.refresh_from_db()
        self.assertIs(self.alice.check_password(STRONG_PASSWORD), True)


class DashboardTests(BaseTestCase):
    def test_anonymous_is_sent_to_login(self) -> None:
        response = self.client.get(reverse("dashboard"))
        self.assertRedirects(response, f"{reverse('login')}?next={reverse('dashboard')}")

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
    def test_issue_shows_secret_once_with_proxy_url_and_curl_line(self) -> None:
        self.client.force_login(self.charlie)
        response = self.client.post(reverse("credentials"), {"login": ""})
        self.assertEqual(response.status_code, 200)
        self.assertIn("no-store", response["Cache-Control"])
        credential = ProxyCredential.objects.get(user=self.charlie)
        secret = secret_on_page(response.content.decode())
        proxy_url = f"http://{credential.login}:{secret}@proxy.example.net:3128"
        self.assertContains(response, f'value="{proxy_url}"')
        self.assertContains(response, f"curl -x {proxy_url} https://example.com/")
        self.assertContains(response, 'data-copy-target="field-curl"')
        self.assertEqual(credential_authenticate(login=credential.login, secret=secret), credential)

        listing = self.client.get(reverse("credentials"))
        self.assertContains(listing, credential.login)
        self.assertNotContains(listing, secret)
        self.assertNotContains(self.client.get(reverse("dashboard")), secret)

    def test_chosen_login_and_its_errors(self) -> None:
        self.client.force_login(self.charlie)
        response = self.client.post(reverse("credentials"), {"login": "charlie-home"})
        self.assertContains(response, "charlie-home")
        response = self.client.post(reverse("credentials"), {"login": "charlie-home"})
        self.assertContains(response, "This proxy login is already taken.")
        response = self.client.post(reverse("credentials"), {"login": "Bad Login!"})
        self.assertContains(response, "A proxy login is 3-64 characters")
        self.assertEqual(ProxyCredential.objects.filter(user=self.charlie).count(), 1)

    def test_rotate_replaces_the_secret(self) -> None:
        self.client.force_login(self.alice)
        old = self.alice_cred
        response = self.client.post(reverse("credential-rotate", args=[old.credential.pk]))
        new_secret = secret_on_page(response.content.decode())
        self.assertNotEqual(new_secret, old.secret)
        self.assertIsNone(credential_authenticate(login="alice-proxy", secret=old.secret))
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
        self.assertEqual(self.client.post(reverse("credential-revoke", args=[pk])).status_code, 404)
        self.assertIsNotNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )

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
