"""The operators' admin site: every page answers staff and refuses anonymous users, and
the index shows the totals panel.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.services import user_create
from goproxy_site.admin_actions import CONFIRM_FIELD
from goproxy_site.tests.base import AdminTestCase
from plans import services
from plans.models import (
    Plan,
    Subscription,
    UsageBucket,
)
from plans.services import plan_assign


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
            {"action": "deactivate", "_selected_action": [self.alice.pk], CONFIRM_FIELD: "yes"},
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


def staff_with_every_view_permission() -> User:
    """A staff member who may view every plans and accounts table but is no superuser."""
    staff = user_create(
        username="sam", email="sam@example.org", password="pw-sam-123", is_staff=True
    )
    staff.user_permissions.set(
        Permission.objects.filter(
            codename__startswith="view_", content_type__app_label__in=["plans", "accounts"]
        )
    )
    return staff


class BrandingAndSectionsTests(AdminTestCase):
    @override_settings(SITE_NAME="Acme Proxy")
    def test_the_header_carries_the_site_name(self) -> None:
        page = self.client.get(reverse("admin:index"))
        self.assertContains(
            page, '<div id="site-name"><a href="/admin/">Acme Proxy operations</a></div>', html=True
        )
        self.assertContains(page, "<title>Operations | Acme Proxy admin</title>", html=True)
        self.assertNotContains(page, "Django administration")
        self.client.logout()
        # Operators log in through the portal's login (its rate limits and second factor).
        login = self.client.get(reverse("admin:login"))
        self.assertEqual(login.status_code, 302)
        self.assertTrue(login["Location"].startswith(reverse("account_login")))

    def test_superusers_find_the_internal_tables_under_internals(self) -> None:
        apps = {
            app["name"]: app for app in self.client.get(reverse("admin:index")).context["app_list"]
        }
        internal = [m["object_name"] for m in apps["Internals"]["models"]]
        self.assertEqual(sorted(internal), ["OutboxEvent", "TrafficSequence", "UserRestriction"])
        plans = [m["object_name"] for m in apps["Plans"]["models"]]
        self.assertNotIn("OutboxEvent", plans)
        self.assertIn("Subscription", plans)
        self.assertEqual(next(iter(apps)), "Reports")

    def test_other_staff_do_not_see_internal_tables(self) -> None:
        self.client.force_login(staff_with_every_view_permission())
        page = self.client.get(reverse("admin:index"))
        names = {app["name"] for app in page.context["app_list"]}
        self.assertNotIn("Internals", names)
        self.assertNotContains(page, "/admin/plans/outboxevent/")
        self.assertContains(page, "/admin/plans/subscription/")
        for model in ("outboxevent", "trafficsequence", "userrestriction"):
            with self.subTest(model=model):
                url = reverse(f"admin:plans_{model}_changelist")
                self.assertEqual(self.client.get(url).status_code, 403)


REPORT = reverse("admin:traffic")


class TrafficReportTests(AdminTestCase):
    pro: Plan
    dora: User

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.pro = Plan.objects.create(name="Pro", traffic_limit_bytes=10**10, duration_days=30)
        cls.dora = user_create(username="dora", email="dora@example.org")
        dora_sub = plan_assign(user_id=cls.dora.pk, plan=cls.pro)
        hour = timezone.now().replace(minute=0, second=0, microsecond=0)
        for sub, up, down, days_ago in (
            (cls.alice_sub, 100_000, 200_000, 0),
            (dora_sub, 3_000_000, 4_000_000, 0),
            (dora_sub, 50_000_000, 0, 10),
            (cls.bob_sub, 1_000, 1_000, 3),
        ):
            UsageBucket.objects.create(
                user_id=sub.user_id,
                subscription=sub,
                hour=hour - timedelta(days=days_ago),
                bytes_up=up,
                bytes_down=down,
            )

    def test_top_users_today_7_and_30_days(self) -> None:
        expected = {
            "today": ["dora@example.org", "alice@example.org"],
            "7d": ["dora@example.org", "alice@example.org", "bob@example.org"],
            "30d": ["dora@example.org", "alice@example.org", "bob@example.org"],
        }
        for period, order in expected.items():
            with self.subTest(period=period):
                page = self.client.get(REPORT, {"period": period})
                rows = page.context["report"]["top_users"]
                shown = [str(row["user"]).split(">")[1].split("<")[0] for row in rows]
                self.assertEqual(shown, order)
        month = self.client.get(REPORT, {"period": "30d"}).context["report"]
        self.assertEqual(month["top_users"][0]["total"], "57.0 MB")
        self.assertEqual(month["top_users"][0]["plan"], "Pro")
        self.assertEqual(month["total"], "57.3 MB")

    def test_traffic_per_plan_near_limit_and_charts(self) -> None:
        page = self.client.get(REPORT, {"period": "today"})
        report = page.context["report"]
        self.assertEqual(
            [(p["plan"], p["users"], p["total"]) for p in report["per_plan"]],
            [("Pro", 1, "7.0 MB"), ("Basic", 1, "300.0 KB")],
        )
        bob = reverse("admin:accounts_user_change", args=[self.bob.pk])
        near = [str(row["user"]) for row in report["near_limit"]]
        self.assertEqual(near, [f'<a href="{bob}" title="bob">bob@example.org</a>'])
        self.assertContains(page, 'aria-labelledby="top-users-title top-users-desc"')
        self.assertContains(page, 'aria-labelledby="traffic-per-plan-title traffic-per-plan-desc"')
        self.assertContains(page, 'aria-labelledby="report-daily-title report-daily-desc"')
        self.assertContains(page, 'class="bar bar--ranked"', count=4)

    def test_its_users_come_from_one_query(self) -> None:
        with CaptureQueriesContext(connections["default"]) as queries:
            self.client.get(REPORT, {"period": "30d"})
        lookups = [
            q["sql"] for q in queries if 'FROM "accounts_user"' in q["sql"] and " IN (" in q["sql"]
        ]
        self.assertEqual(len(lookups), 1)

    def test_an_unknown_period_is_named_and_the_default_shown(self) -> None:
        page = self.client.get(REPORT, {"period": "year"}, follow=True)
        self.assertContains(page, "Unknown period “year”; choose one of today, 7d, 30d.")
        self.assertEqual(page.context["report"]["period"], "7d")

    def test_it_is_in_the_menu_and_needs_the_usage_view_permission(self) -> None:
        self.assertContains(self.client.get(reverse("admin:index")), f'href="{REPORT}"')
        nobody = user_create(
            username="nina", email="nina@example.org", password="pw-nina-123", is_staff=True
        )
        self.client.force_login(nobody)
        self.assertEqual(self.client.get(REPORT).status_code, 403)
        self.assertNotContains(self.client.get(reverse("admin:index")), f'href="{REPORT}"')
