"""The plans admin: plans with features, subscription actions and pages, read-only
pipeline pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from django.contrib.admin import helpers
from django.test import Client
from django.urls import reverse

from goproxy_site.events import schemas
from goproxy_site.tests.base import AdminTestCase, ApiTestCase
from plans import services
from plans.models import (
    Feature,
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEvent,
    SubscriptionEventKind,
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
                "traffic_limit_bytes": "50000000000",
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

        listing = self.client.get(reverse("admin:plans_plan_changelist"))
        self.assertContains(listing, "Fast lane")
        self.assertContains(listing, "50.0 GB")
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
            {"action": "top_up", "_selected_action": [self.bob_sub.pk], "megabytes": "2"},
        )
        self.assertEqual(Subscription.objects.get(pk=self.bob_sub.pk).topup_bytes, 2_000_000)
        response = self.web.post(
            changelist,
            {"action": "top_up", "_selected_action": [self.bob_sub.pk], "megabytes": "x"},
            follow=True,
        )
        self.assertContains(response, "MB: Enter a whole number.")
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
