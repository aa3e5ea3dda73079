"""The plans admin: plans with features, subscription actions and pages, read-only
pipeline pages.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import time_machine
from django.contrib.admin import helpers
from django.contrib.admin.models import LogEntry
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from accounts.services import user_create
from goproxy_site.admin_actions import CONFIRM_FIELD
from goproxy_site.events import schemas
from goproxy_site.tests.base import AdminTestCase, ApiTestCase
from plans import services
from plans.admin import SubscriptionAdmin
from plans.exports import USAGE_DAILY_HEADER
from plans.models import (
    Feature,
    FreePlanClaim,
    Notification,
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEvent,
    SubscriptionEventKind,
    TrafficSequence,
    UsageBucket,
)
from plans.services import plan_queue

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def used(user_id: int, up: int, down: int, seq: int, at: datetime) -> None:
    services.traffic_apply_batch(
        deltas=[
            schemas.UserConsumedTrafficEvent(
                user_id=user_id,
                bytes_up=up,
                bytes_down=down,
                instance_id="px",
                seq=seq,
                occurred_at=at,
            )
        ]
    )


class PlanAdminTests(AdminTestCase):
    def test_plan_with_features_inline(self) -> None:
        fast = Feature.objects.create(name="Fast lane")
        inline = "Plan_features-"
        response = self.client.post(
            reverse("admin:plans_plan_add"),
            {
                "name": "Team",
                "traffic_limit_bytes_0": "50",
                "traffic_limit_bytes_1": "1000000000",
                "speed_limit_bps_0": "100",
                "speed_limit_bps_1": "125000",
                "duration_days": "30",
                "price": "20.00",
                "currency": "USD",
                "is_public": "on",
                f"{inline}TOTAL_FORMS": "1",
                f"{inline}INITIAL_FORMS": "0",
                f"{inline}0-feature": str(fast.pk),
            },
        )
        self.assertEqual(response.status_code, 302, getattr(response, "context", None))
        team = Plan.objects.get(name="Team")
        self.assertEqual(list(team.features.all()), [fast])
        self.assertEqual(team.traffic_limit_bytes, 50 * 10**9)
        self.assertEqual(team.speed_limit_bps, 12_500_000)

        listing = self.client.get(reverse("admin:plans_plan_changelist"))
        self.assertContains(listing, "Fast lane")
        self.assertContains(listing, "50.0 GB")
        self.assertContains(listing, '<td class="field-speed">100 Mbit/s</td>', html=True)
        rows = {p.name: p.current_subscribers for p in listing.context["cl"].result_list}
        self.assertEqual(rows["Basic"], 2)
        self.assertEqual(rows["Team"], 0)

    def test_subscription_extend_action(self) -> None:
        before = self.alice_sub.expires_at
        response = self.client.post(
            reverse("admin:plans_subscription_changelist"),
            {
                "action": "extend",
                helpers.ACTION_CHECKBOX_NAME: [str(self.alice_sub.pk)],
                "days": "3",
            },
            follow=True,
        )
        self.assertContains(response, "Extended 1 subscription(s) by 3 day(s).")
        self.alice_sub.refresh_from_db()
        assert before is not None
        self.assertEqual(self.alice_sub.expires_at, before + timedelta(days=3))


class AdminLifecycleTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.web = Client()
        self.olga.is_superuser = True
        self.olga.save()
        self.web.force_login(self.olga)

    def test_history_and_reset_log_on_the_subscription_page(self) -> None:
        with time_machine.travel(T0, tick=False):
            sub = services.plan_assign(user_id=self.charlie.pk, plan=self.plan)
            used(self.charlie.pk, 10, 20, 1, T0)
            services.subscription_reset_usage(subscription=sub)
        page = self.web.get(f"/admin/plans/subscription/{sub.pk}/change/")
        self.assertContains(page, "Reset log")
        self.assertContains(page, "Period reset")
        self.assertContains(page, "reset by an operator")

    def test_top_up_and_queue_actions(self) -> None:
        nxt = Plan.objects.create(name="Next", traffic_limit_bytes=10**9)
        changelist = "/admin/plans/subscription/"
        self.web.post(
            changelist,
            {"action": "top_up", "_selected_action": [self.bob_sub.pk], "amount": "2"},
        )
        self.assertEqual(Subscription.objects.get(pk=self.bob_sub.pk).topup_bytes, 2_000_000)
        response = self.web.post(
            changelist,
            {"action": "top_up", "_selected_action": [self.bob_sub.pk], "amount": "x"},
            follow=True,
        )
        self.assertContains(response, "Top-up: Enter the top-up as a number, e.g. 50.")
        self.web.post(
            changelist,
            {"action": "queue_next", "_selected_action": [self.alice_sub.pk], "plan": nxt.pk},
        )
        self.assertEqual(QueuedPlan.objects.get(user_id=self.alice.pk).plan, nxt)

    def test_read_only_pipeline_and_delivery_pages(self) -> None:
        for model in (
            "userrestriction",
            "outboxevent",
            "trafficsequence",
            "webhookdelivery",
            "subscriptionevent",
            "usagereset",
            "notification",
            "webhookendpoint",
            "queuedplan",
        ):
            with self.subTest(model=model):
                self.assertEqual(self.web.get(f"/admin/plans/{model}/").status_code, 200)
        self.assertEqual(self.web.get("/admin/plans/outboxevent/add/").status_code, 403)
        self.assertEqual(
            self.web.get(f"/admin/plans/subscription/{self.alice_sub.pk}/change/").status_code,
            200,
        )


class AdminWritesGoThroughServicesTests(AdminTestCase):
    """Deleting in the admin reaches the same services as its actions."""

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


def user_link(user: User) -> str:
    url = reverse("admin:accounts_user_change", args=[user.pk])
    return f'<a href="{url}" title="{user.username}">{user.email}</a>'


class SpeaksPeopleTests(AdminTestCase):
    """Plans-side pages name users by e-mail, link them, and find them by e-mail."""

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        hour = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
        UsageBucket.objects.create(
            user_id=cls.alice.pk, subscription=cls.alice_sub, hour=hour, bytes_up=5, bytes_down=7
        )
        services.subscription_reset_usage(subscription=cls.alice_sub, by="by op")
        Notification.objects.create(
            subscription=cls.alice_sub,
            user_id=cls.alice.pk,
            kind="quota",
            threshold=80,
            period_start=hour,
        )
        FreePlanClaim.objects.create(user_id=cls.alice.pk, plan=Plan.objects.get(name="Free"))
        plan_queue(user_id=cls.alice.pk, plan=Plan.objects.create(name="Next", duration_days=9))
        TrafficSequence.objects.create(instance_id="px-1", user_id=cls.alice.pk, last_seq=3)

    def test_every_plans_list_shows_the_email_linked_to_the_user(self) -> None:
        for model in PEOPLE_PAGES:
            with self.subTest(model=model):
                page = self.client.get(reverse(f"admin:plans_{model}_changelist"))
                self.assertContains(page, user_link(self.alice), html=True)
                self.assertNotContains(page, f"user {self.alice.pk}<")

    def test_each_page_looks_its_users_up_in_one_query(self) -> None:
        def user_queries() -> list[str]:
            with CaptureQueriesContext(connections["default"]) as queries:
                page = self.client.get(reverse("admin:plans_subscription_changelist"))
            self.assertEqual(page.status_code, 200)
            return [q["sql"] for q in queries if 'FROM "accounts_user"' in q["sql"]]

        few = user_queries()
        for n in range(25):
            user = user_create(username=f"u{n}", email=f"u{n}@example.org")
            services.plan_assign(user_id=user.pk, plan=self.plan)
        many = user_queries()
        # The session's own user, then one batched look-up of the page's users.
        self.assertEqual(len(few), 2)
        self.assertEqual(len(many), 2)
        self.assertIn(" IN (", many[-1])

    def test_search_by_email_username_id_and_plan(self) -> None:
        url = reverse("admin:plans_subscription_changelist")
        cases = {
            "alice@example": {self.alice.pk},
            "bob": {self.bob.pk},
            str(self.alice.pk): {self.alice.pk},
            "Basic alice": {self.alice.pk},
            "Basic": {self.alice.pk, self.bob.pk},
            "nobody": set(),
        }
        for term, expected in cases.items():
            with self.subTest(term=term):
                page = self.client.get(url, {"q": term})
                self.assertEqual({s.user_id for s in page.context["cl"].result_list}, expected)
        usage = self.client.get(reverse("admin:plans_usagebucket_changelist"), {"q": "ALICE"})
        self.assertEqual(len(usage.context["cl"].result_list), 1)

    def test_a_search_matching_too_many_users_says_so(self) -> None:
        with mock.patch.object(SubscriptionAdmin, "user_search_limit", 1):
            page = self.client.get(
                reverse("admin:plans_subscription_changelist"), {"q": "example.org"}, follow=True
            )
        self.assertContains(page, "matches more than 1 users")

    def test_titles_and_breadcrumbs_name_the_person(self) -> None:
        page = self.client.get(reverse("admin:plans_subscription_change", args=[self.bob_sub.pk]))
        self.assertContains(page, "<h2>bob@example.org — Basic (limited)</h2>", html=True)
        self.assertContains(page, "<title>bob@example.org — Basic (limited) | Change subscription")
        self.assertContains(page, "&rsaquo; bob@example.org — Basic (limited)\n</div>")
        self.assertContains(page, "400.0 KB")  # bytes up, in human units
        self.assertContains(page, "600.0 KB")

    def test_a_deleted_user_is_named_as_such(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(user_id=987654)
        page = self.client.get(reverse("admin:plans_subscription_changelist"))
        self.assertContains(page, "user 987654 (deleted)")


PEOPLE_PAGES = (
    "subscription",
    "usagebucket",
    "subscriptionevent",
    "notification",
    "usagereset",
    "freeplanclaim",
    "queuedplan",
    "userrestriction",
    "trafficsequence",
)


class SubscriptionActionAuditTests(AdminTestCase):
    URL = reverse("admin:plans_subscription_changelist")

    def post(self, action: str, subs: list[Subscription], **extra: str) -> Any:
        data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [str(s.pk) for s in subs]}
        return self.client.post(self.URL, {**data, **extra}, follow=True)

    def test_disable_asks_first_and_is_logged_with_the_operator(self) -> None:
        page = self.post("disable", [self.alice_sub, self.bob_sub])
        self.assertContains(page, "Disable subscriptions?")
        self.assertContains(page, "<li>alice@example.org — Basic (active)</li>", html=True)
        self.assertContains(page, "<li>bob@example.org — Basic (limited)</li>", html=True)
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.status, "active")

        done = self.post("disable", [self.alice_sub], **{CONFIRM_FIELD: "yes"})
        self.assertContains(done, "Disabled 1 subscription(s).")
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.status, "disabled")
        self.assertEqual(self.alice_sub.history.get(kind="disabled").message, "disabled by op")
        entry = LogEntry.objects.get(object_id=str(self.alice_sub.pk), change_message="Disabled.")
        self.assertEqual(entry.user, self.operator)
        self.assertEqual(entry.object_repr, "alice@example.org — Basic (active)")
        index = self.client.get(reverse("admin:index"))
        self.assertContains(index, "alice@example.org — Basic (active)")

    def test_reset_and_switch_ask_first(self) -> None:
        pro = Plan.objects.create(name="Pro", traffic_limit_bytes=10**10, duration_days=30)
        for action, extra, title in (
            ("reset_usage", {}, "Reset usage?"),
            ("switch", {"plan": str(pro.pk)}, "Switch to Pro?"),
        ):
            with self.subTest(action=action):
                self.assertContains(self.post(action, [self.bob_sub], **extra), title)
        self.bob_sub.refresh_from_db()
        self.assertEqual((self.bob_sub.plan, self.bob_sub.bytes_used), (self.plan, 1_000_000))
        self.post("switch", [self.bob_sub], plan=str(pro.pk), **{CONFIRM_FIELD: "yes"})
        self.bob_sub.refresh_from_db()
        self.assertEqual(self.bob_sub.plan, pro)
        switched = self.bob_sub.history.get(kind="switched")
        self.assertEqual(switched.message, "Basic -> Pro by op")

    def test_every_action_names_the_operator(self) -> None:
        self.post("extend", [self.alice_sub], days="2")
        self.post("top_up", [self.alice_sub], amount="3", amount_unit="1000000")
        self.post("reset_usage", [self.alice_sub], **{CONFIRM_FIELD: "yes"})
        messages_ = dict(self.alice_sub.history.values_list("kind", "message"))
        self.assertEqual(messages_["extended"], "+2 day(s) by op")
        self.assertEqual(messages_["topped_up"], "by op")
        self.assertEqual(messages_["reset"], "reset by op")
        logged = set(
            LogEntry.objects.filter(object_id=str(self.alice_sub.pk)).values_list(
                "change_message", flat=True
            )
        )
        self.assertEqual(logged, {"Extended by 2 day(s).", "Topped up by 3.0 MB.", "Reset usage."})


class PlanFormUnitsTests(AdminTestCase):
    def test_sizes_and_speeds_show_in_the_largest_exact_unit(self) -> None:
        plan = Plan.objects.create(
            name="Pro", traffic_limit_bytes=50 * 10**9, speed_limit_bps=12_500_000
        )
        page = self.client.get(reverse("admin:plans_plan_change", args=[plan.pk]))
        self.assertContains(page, 'name="traffic_limit_bytes_0" value="50"')
        self.assertContains(page, '<option value="1000000000" selected>GB</option>', html=True)
        self.assertContains(page, 'name="speed_limit_bps_0" value="100"')
        self.assertContains(page, '<option value="125000" selected>Mbit/s</option>', html=True)
        self.assertContains(page, "Traffic limit")
        self.assertNotContains(page, "Speed limit bps")

    def test_bad_numbers_are_explained_and_empty_means_unlimited(self) -> None:
        data = {
            "name": "Team",
            "traffic_limit_bytes_0": "lots",
            "traffic_limit_bytes_1": "1000000000",
            "speed_limit_bps_0": "",
            "speed_limit_bps_1": "125000",
            "price": "0",
            "currency": "USD",
            "Plan_features-TOTAL_FORMS": "0",
            "Plan_features-INITIAL_FORMS": "0",
        }
        page = self.client.post(reverse("admin:plans_plan_add"), data)
        self.assertContains(page, "Enter the traffic limit as a number, e.g. 50.")
        data["traffic_limit_bytes_0"] = "1.5"
        self.client.post(reverse("admin:plans_plan_add"), data)
        team = Plan.objects.get(name="Team")
        self.assertEqual((team.traffic_limit_bytes, team.speed_limit_bps), (1_500_000_000, None))


EXPORT = reverse("admin:plans_usagebucket_export_daily")


class UsagePerDayExportTests(AdminTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        day = datetime(2026, 3, 2, tzinfo=UTC)
        for sub, hour, up, down in (
            (cls.alice_sub, day.replace(hour=1), 100, 200),
            (cls.alice_sub, day.replace(hour=23), 10, 20),
            (cls.alice_sub, day + timedelta(days=1), 5, 5),
            (cls.bob_sub, day.replace(hour=5), 1_000, 0),
        ):
            UsageBucket.objects.create(
                user_id=sub.user_id, subscription=sub, hour=hour, bytes_up=up, bytes_down=down
            )

    def rows(self, **params: str) -> list[list[str]]:
        response = self.client.get(EXPORT, params)
        self.assertEqual(response.status_code, 200)
        body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
        return list(csv.reader(io.StringIO(body)))

    def test_traffic_per_day_user_and_plan(self) -> None:
        rows = self.rows(first="2026-03-01", last="2026-03-31")
        self.assertEqual(rows[0], list(USAGE_DAILY_HEADER))
        self.assertEqual(
            rows[1:],
            [
                [
                    "2026-03-02",
                    str(self.alice.pk),
                    "alice",
                    "alice@example.org",
                    "Basic",
                    "110",
                    "220",
                    "330",
                ],
                [
                    "2026-03-02",
                    str(self.bob.pk),
                    "bob",
                    "bob@example.org",
                    "Basic",
                    "1000",
                    "0",
                    "1000",
                ],
                [
                    "2026-03-03",
                    str(self.alice.pk),
                    "alice",
                    "alice@example.org",
                    "Basic",
                    "5",
                    "5",
                    "10",
                ],
            ],
        )

    def test_narrowed_by_day_and_user(self) -> None:
        only_bob = self.rows(first="2026-03-01", last="2026-03-31", q="bob@")
        self.assertEqual([row[2] for row in only_bob[1:]], ["bob"])
        one_day = self.rows(first="2026-03-03", last="2026-03-03")
        self.assertEqual([row[0] for row in one_day[1:]], ["2026-03-03"])

    def test_bad_input_is_explained(self) -> None:
        cases = {
            "first=yesterday": "first: Enter a valid date.",
            "first=2026-03-05&last=2026-03-01": "The first day must not be after the last day.",
            "first=2020-01-01&last=2026-01-01": "Export at most 400 days at a time.",
        }
        for query, message in cases.items():
            with self.subTest(query=query):
                response = self.client.get(f"{EXPORT}?{query}")
                self.assertEqual(response.status_code, 400)
                self.assertIn(message, response.content.decode())
        with mock.patch("plans.admin.MAX_EXPORT_USERS", 1):
            response = self.client.get(EXPORT, {"q": "example.org"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("matches more than 1 users", response.content.decode())

    def test_users_are_looked_up_once_per_chunk(self) -> None:
        with CaptureQueriesContext(connections["default"]) as queries:
            self.rows(first="2026-03-01", last="2026-03-31")
        lookups = [q["sql"] for q in queries if 'FROM "accounts_user"' in q["sql"]]
        self.assertEqual(len(lookups), 2)  # the session's user, then the rows' users

    def test_the_usage_list_links_to_it(self) -> None:
        page = self.client.get(reverse("admin:plans_usagebucket_changelist"), {"q": "alice"})
        self.assertContains(page, f"{EXPORT}?q=alice")
