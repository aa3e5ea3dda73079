"""The operators' admin site: every page answers staff and refuses anonymous users, and
the index shows the totals panel.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from goproxy_site.tests.base import AdminTestCase
from plans import services
from plans.models import (
    Plan,
    Subscription,
    UsageBucket,
)


class AdminPagesTests(AdminTestCase):
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
        urls = self.admin_urls()
        self.assertGreaterEqual(len(urls), 10)
        for url in urls:
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 200)

    def test_anonymous_is_sent_to_login(self) -> None:
        self.client.logout()
        for url in self.admin_urls():
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 302)
                self.assertIn("/admin/login/", response["Location"])

    def test_user_changelist_shows_plan_columns_and_filters(self) -> None:
        url = reverse("admin:accounts_user_changelist")
        page = self.client.get(url)
        self.assertContains(page, "Basic")
        self.assertContains(page, "Limited")
        self.assertContains(page, "no plan")
        only_limited = self.client.get(url, {"subscription": "limited"})
        self.assertContains(only_limited, "bob")
        self.assertNotContains(only_limited, ">alice@example.org<")
        no_plan = self.client.get(url, {"subscription": "none"})
        self.assertContains(no_plan, ">charlie@example.org<")
        self.assertNotContains(no_plan, ">bob@example.org<")

    def test_assign_plan_action_calls_the_service(self) -> None:
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
        self.client.post(
            reverse("admin:accounts_user_changelist"),
            {"action": "deactivate", "_selected_action": [self.alice.pk]},
        )
        self.assertIs(User.objects.get(pk=self.alice.pk).is_active, False)

    def test_issuing_a_credential_shows_the_secret_once(self) -> None:
        response = self.client.post(
            reverse("admin:accounts_proxycredential_add"),
            {"user": self.charlie.pk, "login": "charlie-admin"},
            follow=True,
        )
        self.assertContains(response, "Secret (shown once)")
        self.assertContains(response, "charlie-admin")


USERS = reverse("admin:accounts_user_changelist")


class AdminIndexTests(AdminTestCase):
    def test_totals_panel(self) -> None:
        UsageBucket.objects.create(
            user_id=self.alice.pk,
            subscription=self.alice_sub,
            hour=timezone.now().replace(minute=0, second=0, microsecond=0),
            bytes_up=2_000_000,
            bytes_down=3_000_000,
        )
        response = self.client.get(reverse("admin:index"))
        totals = response.context["goproxy_totals"]
        self.assertEqual(totals["users_total"], 4)
        self.assertEqual(totals["subscriptions_active"], 1)
        self.assertEqual(totals["subscriptions_limited"], 1)
        self.assertEqual(totals["near_limit"], 1)
        self.assertEqual(totals["users_without_plan"], 2)
        self.assertEqual(totals["traffic_today"], "5.0 MB")
        self.assertContains(response, "At a glance")
        self.assertContains(response, f"{USERS}?subscription=limited")
        self.assertContains(response, 'aria-labelledby="all-traffic-title all-traffic-desc"')

    def test_the_index_shows_the_plan_controller_lag_and_says_when_it_is_too_far_behind(
        self,
    ) -> None:
        services.controller_heartbeat_record(
            worker="w1", lag_events=4200, lag_seconds=3.2, events_per_second=900
        )
        response = self.client.get(reverse("admin:index"))
        self.assertContains(response, "Plan-controller lag")
        self.assertContains(response, "3.2 s <small>4200 events, 1 worker(s)</small>")
        self.assertNotContains(response, "errornote")
        services.controller_heartbeat_record(
            worker="w1", lag_events=90_000, lag_seconds=95, events_per_second=900
        )
        with self.settings(PLANS_MAX_LAG_SECONDS=30):
            response = self.client.get(reverse("admin:index"))
        self.assertContains(response, "plan-controller 95 s behind (more than 30 s)")

    def test_only_the_index_computes_totals(self) -> None:
        response = self.client.get(USERS)
        self.assertNotIn("goproxy_totals", response.context)
