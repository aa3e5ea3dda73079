"""The operator admin: usage at a glance, filters, actions, user page, totals, plan features."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import ProxyCredential, User
from accounts.selectors import credential_authenticate, user_email_verified
from accounts.services import user_create
from goproxy_site.tests.base import AdminTestCase
from plans.models import Plan, Subscription, SubscriptionStatus, UsageBucket

USERS = reverse("admin:accounts_user_changelist")


class UserChangelistTests(AdminTestCase):
    def test_usage_status_and_expiry_at_a_glance(self) -> None:
        response = self.client.get(USERS)
        self.assertContains(response, "1.0 MB of 1.0 MB (100 %)")  # bob
        self.assertContains(response, "0 B of 1.0 MB (0 %)")  # alice
        self.assertContains(response, 'role="progressbar"', count=2)
        self.assertContains(response, "Limited")
        self.assertContains(response, f"{self.alice_sub.expires_at:%Y-%m-%d %H:%M}")
        self.assertContains(response, "no plan")  # charlie and op

    def test_filters(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() + timedelta(days=2)
        )
        cases = {
            "over80": {"bob"},
            "limited": {"bob"},
            "active": {"alice"},
            "expiring": {"alice"},
            "none": {"charlie", "op"},
        }
        for value, expected in cases.items():
            with self.subTest(filter=value):
                response = self.client.get(USERS, {"subscription": value})
                shown = {u.username for u in response.context["cl"].result_list}
                self.assertEqual(shown, expected)


class UserActionTests(AdminTestCase):
    def test_assign_plan(self) -> None:
        pro = Plan.objects.create(name="Pro", traffic_limit_bytes=10**10, duration_days=30)
        response = self.act("assign_plan", [self.charlie, self.alice], plan=str(pro.pk))
        self.assertContains(response, "Assigned Pro to 2 user(s).")
        for user in (self.charlie, self.alice):
            self.assertEqual(Subscription.objects.get(user_id=user.pk, is_current=True).plan, pro)

    def test_assign_without_plan_says_so(self) -> None:
        response = self.act("assign_plan", [self.charlie])
        self.assertContains(response, "Choose a plan to assign.")
        self.assertIs(Subscription.objects.filter(user_id=self.charlie.pk).exists(), False)

    def test_extend_by_days_skipping_users_without_plan(self) -> None:
        before = self.alice_sub.expires_at
        assert before is not None
        response = self.act("extend_subscription", [self.alice, self.charlie], days="5")
        self.assertContains(response, "Extended 1 subscription(s) by 5 day(s).")
        self.assertContains(response, "Skipped (no plan): charlie.")
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.expires_at, before + timedelta(days=5))

    def test_extend_needs_a_positive_number(self) -> None:
        for days, message in [
            ("", "Enter the number of days to extend by."),
            ("0", "Days: Ensure this value is greater than or equal to 1."),
            ("x", "Days: Enter a whole number."),
        ]:
            with self.subTest(days=days):
                response = self.act("extend_subscription", [self.alice], days=days)
                self.assertContains(response, message)

    def test_reset_usage(self) -> None:
        response = self.act("reset_usage", [self.bob])
        self.assertContains(response, "Reset the usage of 1 subscription(s).")
        self.bob_sub.refresh_from_db()
        self.assertEqual(self.bob_sub.bytes_used, 0)
        self.assertEqual(self.bob_sub.status, SubscriptionStatus.ACTIVE)

    def test_revoke_credentials(self) -> None:
        response = self.act("revoke_credentials", [self.alice, self.bob])
        self.assertContains(response, "Revoked 1 credential(s).")
        self.assertIs(ProxyCredential.objects.get(login="alice-proxy").is_revoked, True)

    def test_deactivate(self) -> None:
        response = self.act("deactivate", [self.alice])
        self.assertContains(response, "Deactivated 1 user(s).")
        self.alice.refresh_from_db()
        self.alice_sub.refresh_from_db()
        self.assertIs(self.alice.is_active, False)
        self.assertEqual(self.alice_sub.status, SubscriptionStatus.DISABLED)

    def test_mark_email_verified(self) -> None:
        dora = user_create(username="dora", email="dora@example.org", password="pw-dora-123")
        self.assertIs(user_email_verified(user_id=dora.pk), False)
        response = self.act("mark_email_verified", [dora, self.alice])
        self.assertContains(response, "Marked 1 e-mail address(es) verified.")  # alice was
        self.assertIs(user_email_verified(user_id=dora.pk), True)

    def test_the_list_shows_who_has_verified(self) -> None:
        user_create(username="dora", email="dora@example.org")
        response = self.client.get(USERS)
        self.assertContains(response, "E-mail verified")
        # The personas and the operator have verified their addresses, dora has not.
        self.assertContains(response, 'alt="False"', count=1)  # only dora


class UserPageTests(AdminTestCase):
    def test_shows_subscription_chart_and_credentials(self) -> None:
        UsageBucket.objects.create(
            user_id=self.alice.pk,
            subscription=self.alice_sub,
            hour=timezone.now().replace(minute=0, second=0, microsecond=0),
            bytes_up=300,
            bytes_down=700,
        )
        response = self.client.get(reverse("admin:accounts_user_change", args=[self.alice.pk]))
        self.assertContains(response, "subscription-summary")
        self.assertContains(
            response, reverse("admin:plans_subscription_change", args=[self.alice_sub.pk])
        )
        self.assertContains(
            response, f'<title id="user-{self.alice.pk}-usage-title">alice — last 30 days</title>'
        )
        self.assertContains(response, 'class="bar bar--down"')
        self.assertContains(response, "alice-proxy")

    def test_user_without_plan(self) -> None:
        response = self.client.get(reverse("admin:accounts_user_change", args=[self.charlie.pk]))
        self.assertContains(response, "No plan. Use the")
        self.assertContains(response, "No traffic in the last 30 days.")

    def test_add_user_page_still_works(self) -> None:
        response = self.client.get(reverse("admin:accounts_user_add"))
        self.assertEqual(response.status_code, 200)


class AdminWritesGoThroughServicesTests(AdminTestCase):
    """Edits in the admin's forms reach the same services as its actions."""

    def test_deleting_a_user_ends_proxy_access_first(self) -> None:
        url = reverse("admin:accounts_user_delete", args=[self.alice.pk])
        self.client.post(url, {"post": "yes"})
        self.assertFalse(User.objects.filter(pk=self.alice.pk).exists())
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual(sub.status, SubscriptionStatus.DISABLED)

    def test_unticking_active_deactivates_through_the_service(self) -> None:
        model_admin = admin.site._registry[User]
        request = RequestFactory().post("/")
        request.user = self.operator
        self.alice.is_active = False
        form = SimpleNamespace(changed_data=["is_active"])
        model_admin.save_model(request, self.alice, form, change=True)
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual(sub.status, SubscriptionStatus.DISABLED)
