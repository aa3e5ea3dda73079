"""Every admin page answers 200 to staff and refuses anonymous users."""

from __future__ import annotations

from types import SimpleNamespace

from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from accounts.models import User
from accounts.selectors import credential_authenticate
from accounts.services import user_create
from goproxy_site.tests.base import BaseTestCase
from plans.models import (
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEvent,
    SubscriptionEventKind,
    SubscriptionStatus,
)
from plans.services import plan_queue


class AdminPagesTests(BaseTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.operator = user_create(
            username="op",
            email="op@example.org",
            password="pw-op-123",
            is_staff=True,
            is_superuser=True,
        )

    def admin_urls(self) -> list[str]:
        urls = [reverse("admin:index")]
        for model in admin.site._registry:
            meta = model._meta
            urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
            obj = model._default_manager.first()
            if obj is not None:
                urls.append(
                    reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
                )
        return urls

    def test_staff_gets_200_on_every_page(self) -> None:
        self.client.force_login(self.operator)
        urls = self.admin_urls()
        self.assertGreaterEqual(len(urls), 10)
        for url in urls:
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 200)

    def test_anonymous_is_sent_to_login(self) -> None:
        for url in self.admin_urls():
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 302)
                self.assertIn("/admin/login/", response["Location"])

    def test_user_changelist_shows_plan_columns_and_filters(self) -> None:
        self.client.force_login(self.operator)
        url = reverse("admin:accounts_user_changelist")
        page = self.client.get(url)
        self.assertContains(page, "Basic")
        self.assertContains(page, "Limited")
        self.assertContains(page, "no plan")
        only_limited = self.client.get(url, {"subscription": "limited"})
        self.assertContains(only_limited, "bob")
        self.assertNotContains(only_limited, "alice@example.org")
        no_plan = self.client.get(url, {"subscription": "none"})
        self.assertContains(no_plan, "charlie@example.org")
        self.assertNotContains(no_plan, "bob@example.org")

    def test_assign_plan_action_calls_the_service(self) -> None:
        self.client.force_login(self.operator)
        free = Plan.objects.get(name="Free")
        response = self.client.post(
            reverse("admin:accounts_user_changelist"),
            {"action": "assign_plan", "_selected_action": [self.charlie.pk], "plan": free.pk},
            follow=True,
        )
        self.assertContains(response, "Assigned Free to 1 user")
        sub = Subscription.objects.get(user_id=self.charlie.pk, is_current=True)
        self.assertEqual(sub.plan, free)

    def test_deactivate_action(self) -> None:
        self.client.force_login(self.operator)
        self.client.post(
            reverse("admin:accounts_user_changelist"),
            {"action": "deactivate", "_selected_action": [self.alice.pk]},
        )
        self.assertIs(User.objects.get(pk=self.alice.pk).is_active, False)

    def test_issuing_a_credential_shows_the_secret_once(self) -> None:
        self.client.force_login(self.operator)
        response = self.client.post(
            reverse("admin:accounts_proxycredential_add"),
            {"user": self.charlie.pk, "login": "charlie-admin"},
            follow=True,
        )
        self.assertContains(response, "Secret (shown once)")
        self.assertContains(response, "charlie-admin")


class AdminWritesGoThroughServicesTests(BaseTestCase):
    """Edits in the admin's forms reach the same services as its actions."""

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.operator = user_create(
            username="op2",
            email="op2@example.org",
            password="pw-op-123",
            is_staff=True,
            is_superuser=True,
        )

    def test_deleting_a_user_ends_proxy_access_first(self) -> None:
        self.client.force_login(self.operator)
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

    def test_subscriptions_cannot_be_deleted_and_queued_plans_cancel_with_history(self) -> None:
        self.client.force_login(self.operator)
        url = reverse("admin:plans_subscription_delete", args=[self.alice_sub.pk])
        self.assertEqual(self.client.get(url).status_code, 403)
        nxt = Plan.objects.create(name="Next", traffic_limit_bytes=10**6, duration_days=30)
        queued = plan_queue(user_id=self.alice.pk, plan=nxt)
        url = reverse("admin:plans_queuedplan_delete", args=[queued.pk])
        self.client.post(url, {"post": "yes"})
        self.assertFalse(QueuedPlan.objects.filter(user_id=self.alice.pk).exists())
        self.assertTrue(
            SubscriptionEvent.objects.filter(
                user_id=self.alice.pk, kind=SubscriptionEventKind.QUEUE_CANCELLED
            ).exists()
        )
