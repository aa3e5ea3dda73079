"""Signup, e-mail verification, login, logout and password reset and change: allauth's
flows with the portal's forms, templates and rules, and their rate limits."""

from __future__ import annotations

import re

from allauth.account.models import EmailAddress
from django.core import mail
from django.test import override_settings
from django.urls import reverse

from accounts.models import User
from accounts.selectors import user_email_verified
from accounts.services import user_create, user_deactivate
from goproxy_site.tests.base import BaseTestCase

STRONG_PASSWORD = "correct-horse-battery-9"
WRONG_PASSWORD = "wrong-password"


def link_in(message: mail.EmailMessage, pattern: str) -> str:
    match = re.search(rf"http://testserver({pattern}\S*)", str(message.body))
    assert match, f"no {pattern} link in: {message.body}"
    return match.group(1)


def signup(client, email: str, password: str = STRONG_PASSWORD, **extra):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": password, "password2": password},
        **extra,
    )


class SignupTests(BaseTestCase):
    def test_page_has_labelled_fields(self) -> None:
        response = self.client.get(reverse("account_signup"))
        self.assertContains(response, '<label for="id_email">E-mail address</label>')
        self.assertContains(response, '<label for="id_password1">Password</label>')
        self.assertContains(response, '<label for="id_password2">Password again</label>')

    def test_the_old_signup_address_leads_to_the_new_page(self) -> None:
        self.assertRedirects(self.client.get("/signup/"), reverse("account_signup"))

    def test_it_creates_a_user_logs_in_and_mails_a_verification_link(self) -> None:
        response = signup(self.client, "New.Person@Example.ORG", follow=True)
        self.assertRedirects(response, reverse("dashboard"))
        user = User.objects.get(email__iexact="new.person@example.org")
        self.assertEqual(user.username, "new.person@example.org")
        self.assertIs(user.check_password(STRONG_PASSWORD), True)
        self.assertEqual(response.context["user"], user)
        self.assertIs(user_email_verified(user_id=user.pk), False)
        self.assertContains(response, "Verify your e-mail address.")
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["new.person@example.org"])

    def test_the_link_verifies_only_after_the_confirm_button(self) -> None:
        signup(self.client, "verify.me@example.org")
        user = User.objects.get(email="verify.me@example.org")
        link = link_in(mail.outbox[0], "/accounts/confirm-email/")
        page = self.client.get(link)
        self.assertContains(page, "Verify verify.me@example.org")
        # A mail scanner that only follows the link verifies nothing.
        self.assertIs(user_email_verified(user_id=user.pk), False)
        response = self.client.post(link, follow=True)
        self.assertIs(user_email_verified(user_id=user.pk), True)
        self.assertNotContains(response, "Verify your e-mail address.")

    def test_weak_password_is_refused_with_validator_messages(self) -> None:
        response = signup(self.client, "weak@example.org", "password")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "This password is too common.")
        self.assertIs(User.objects.filter(email="weak@example.org").exists(), False)

    def test_password_similar_to_email_is_refused(self) -> None:
        self.assertContains(
            signup(self.client, "zebracorn@example.org", "zebracorn1"), "too similar"
        )

    def test_mismatched_passwords(self) -> None:
        response = self.client.post(
            reverse("account_signup"),
            {"email": "x@example.org", "password1": STRONG_PASSWORD, "password2": "other-1-23"},
        )
        self.assertContains(response, "You must type the same password each time.")
        self.assertContains(response, 'aria-invalid="true"')

    def test_an_address_in_use_any_case(self) -> None:
        response = signup(self.client, "ALICE@example.org")
        self.assertContains(response, "A user is already registered with this email address.")
        self.assertEqual(User.objects.filter(email__iexact="alice@example.org").count(), 1)
        self.assertEqual(mail.outbox, [])

    def test_invalid_email(self) -> None:
        self.assertContains(signup(self.client, "not-an-email"), "Enter a valid email address.")

    def test_an_overlong_address_is_a_form_error(self) -> None:
        response = signup(self.client, "a" * 250 + "@example.org")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "errorlist")
        self.assertIs(User.objects.filter(email__startswith="aaaa").exists(), False)


class LoginTests(BaseTestCase):
    def test_email_login_ignores_case(self) -> None:
        user = user_create(username="dora", email="dora@example.org", password=STRONG_PASSWORD)
        response = self.client.post(
            reverse("account_login"), {"login": "Dora@Example.org", "password": STRONG_PASSWORD}
        )
        self.assertRedirects(response, reverse("home"), target_status_code=302)
        self.assertEqual(int(self.client.session["_auth_user_id"]), user.pk)

    def test_operators_log_in_with_their_email_too(self) -> None:
        user_create(username="op", email="op@example.org", password=STRONG_PASSWORD, is_staff=True)
        response = self.client.post(
            reverse("account_login"), {"login": "op@example.org", "password": STRONG_PASSWORD}
        )
        self.assertEqual(response.status_code, 302)

    def test_wrong_password_shows_error(self) -> None:
        response = self.client.post(
            reverse("account_login"), {"login": "alice@example.org", "password": "nope-nope"}
        )
        self.assertContains(response, "The email address and/or password you specified are not")

    @override_settings(SUPPORT_EMAIL="help@goproxy.example")
    def test_a_disabled_account_is_told_so_with_the_support_address(self) -> None:
        user_deactivate(user=self.alice)
        response = self.client.post(
            reverse("account_login"),
            {"login": "alice@example.org", "password": "pw-alice-1"},
            follow=True,
        )
        self.assertContains(
            response, "This account is disabled — contact support at help@goproxy.example."
        )
        self.assertNotContains(response, "not correct")
        self.assertNotIn("_auth_user_id", self.client.session)

    def test_a_disabled_account_with_a_wrong_password_learns_nothing(self) -> None:
        user_deactivate(user=self.alice)
        response = self.client.post(
            reverse("account_login"), {"login": "alice@example.org", "password": "wrong-one"}
        )
        self.assertContains(response, "are not correct")
        self.assertNotContains(response, "disabled")

    def test_logout_is_a_post(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(reverse("account_logout"))
        self.assertRedirects(response, "/", fetch_redirect_response=False)
        self.assertNotIn("_auth_user_id", self.client.session)


class PasswordTests(BaseTestCase):
    def test_reset_by_email_then_login_with_new_password(self) -> None:
        response = self.client.post(
            reverse("account_reset_password"), {"email": "alice@example.org"}
        )
        self.assertRedirects(response, reverse("account_reset_password_done"))
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["alice@example.org"])
        link = link_in(mail.outbox[0], "/accounts/password/reset/key/")
        response = self.client.get(link, follow=True)
        self.assertContains(response, "Choose a new password")
        response = self.client.post(
            response.redirect_chain[-1][0],
            {"password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD},
        )
        self.assertRedirects(response, reverse("account_reset_password_from_key_done"))
        self.assertIs(self.client.login(username="alice", password=STRONG_PASSWORD), True)

    def test_reset_for_unknown_email_sends_nothing_and_says_the_same(self) -> None:
        response = self.client.post(
            reverse("account_reset_password"), {"email": "nobody@example.org"}, follow=True
        )
        self.assertContains(response, "Check your e-mail")
        self.assertEqual(mail.outbox, [])

    def test_change_password(self) -> None:
        self.client.force_login(self.alice)
        page = self.client.get(reverse("account_change_password"))
        self.assertContains(page, "Delete my account")
        self.assertContains(page, "Two-factor authentication")
        response = self.client.post(
            reverse("account_change_password"),
            {
                "oldpassword": "pw-alice-1",
                "password1": STRONG_PASSWORD,
                "password2": STRONG_PASSWORD,
            },
        )
        self.assertEqual(response.status_code, 302)
        self.alice.refresh_from_db()
        self.assertIs(self.alice.check_password(STRONG_PASSWORD), True)


class RateLimitTests(BaseTestCase):
    """Every limit answers with a message and 429; no limit lets mail pile up."""

    def _login(self, login: str, password: str = WRONG_PASSWORD, ip: str = "10.0.0.1"):
        return self.client.post(
            reverse("account_login"), {"login": login, "password": password}, REMOTE_ADDR=ip
        )

    @override_settings(ACCOUNT_RATE_LIMITS={"login_failed": "10/m/ip,5/5m/key"})
    def test_failed_logins_per_account_lock_that_account_from_any_address(self) -> None:
        for i in range(5):
            self.assertEqual(self._login("alice@example.org", ip=f"10.0.0.{i}").status_code, 200)
        refused = self._login("alice@example.org", "pw-alice-1", ip="10.0.9.9")
        self.assertContains(refused, "Too many failed login attempts.", status_code=429)
        self.assertNotIn("_auth_user_id", self.client.session)
        # Another account from the same addresses is not locked.
        self.assertEqual(self._login("bob@example.org", "pw-bob-1", ip="10.0.0.1").status_code, 302)

    @override_settings(ACCOUNT_RATE_LIMITS={"login_failed": "10/m/ip,5/5m/key"})
    def test_failed_logins_per_ip_lock_that_address_across_accounts(self) -> None:
        for i in range(10):
            self._login(f"guess{i}@example.org")
        refused = self._login("bob@example.org", "pw-bob-1")
        self.assertContains(refused, "Too many failed login attempts.", status_code=429)
        self.assertEqual(self._login("bob@example.org", "pw-bob-1", ip="10.0.0.2").status_code, 302)

    @override_settings(ACCOUNT_RATE_LIMITS={"signup": "3/h/ip"})
    def test_signups_per_ip(self) -> None:
        for i in range(3):
            self.assertEqual(signup(self.client, f"new{i}@example.org").status_code, 302)
            self.client.logout()
        response = signup(self.client, "new9@example.org")
        self.assertContains(response, "Too many attempts", status_code=429)
        self.assertIs(User.objects.filter(email="new9@example.org").exists(), False)

    @override_settings(ACCOUNT_RATE_LIMITS={"reset_password": "10/h/ip,3/h/key"})
    def test_password_reset_mails_per_address_and_per_ip(self) -> None:
        url = reverse("account_reset_password")
        statuses = [
            self.client.post(
                url, {"email": "alice@example.org"}, REMOTE_ADDR=f"10.1.0.{i}"
            ).status_code
            for i in range(6)
        ]
        self.assertEqual(statuses, [302, 302, 302, 429, 429, 429])
        self.assertEqual(len(mail.outbox), 3)
        # From one address, other inboxes too: at most 10 an hour.
        for i in range(12):
            self.client.post(url, {"email": f"user{i}@example.org"}, REMOTE_ADDR="10.2.0.1")
        response = self.client.post(url, {"email": "bob@example.org"}, REMOTE_ADDR="10.2.0.1")
        self.assertContains(response, "Too many attempts", status_code=429)
        self.assertEqual(len(mail.outbox), 3)  # the unknown addresses got nothing either

    def test_verification_resend_per_address(self) -> None:
        dora = user_create(username="dora", email="dora@example.org", password=STRONG_PASSWORD)
        self.client.force_login(dora)
        url = reverse("email-verification-resend")
        self.assertRedirects(self.client.post(url), reverse("dashboard"))
        refused = self.client.post(url)
        self.assertContains(
            refused, "A verification link was sent to dora@example.org", status_code=429
        )
        self.assertEqual(refused["Retry-After"], "180")
        self.assertEqual([m.to for m in mail.outbox], [["dora@example.org"]])
        self.assertIs(EmailAddress.objects.get(user=dora).verified, False)

    @override_settings(ACCOUNT_RATE_LIMITS={"confirm_email": "1/3m/key,2/h/ip"})
    def test_verification_mails_per_ip(self) -> None:
        url = reverse("email-verification-resend")
        for name in ("erin", "fay", "gil"):
            user = user_create(username=name, email=f"{name}@example.org", password=STRONG_PASSWORD)
            self.client.force_login(user)
            last = self.client.post(url, REMOTE_ADDR="10.3.0.1")
        self.assertEqual(last.status_code, 429)
        self.assertEqual(len(mail.outbox), 2)
