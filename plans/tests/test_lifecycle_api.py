"""Lifecycle through the API, the admin and the subscription URL; views compared with the DB."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine
from django.test import Client

from accounts.tests.api.base import ApiTestCase
from goproxy_site.events import schemas
from plans import services
from plans.models import Plan, QueuedPlan, Subscription, SubscriptionToken

SUBS = "/api/v1/subscriptions/"
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


class LifecycleApiTests(ApiTestCase):
    def test_operator_top_up_switch_enable_and_history(self) -> None:
        self.login(self.olga)
        detail = f"{SUBS}{self.bob_sub.pk}/"
        response = self.client.post(f"{detail}top-up/", {"bytes": 500_000}, format="json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["traffic_limit_bytes"], 1_500_000)
        self.assertEqual(response.json()["status"], "active")
        bad = self.client.post(f"{detail}top-up/", {"bytes": 0}, format="json")
        self.assertEqual(bad.status_code, 400)
        self.assertIn("bytes", bad.json()["errors"] if "errors" in bad.json() else bad.json())
        big = Plan.objects.create(name="Big", traffic_limit_bytes=9_000_000, duration_days=60)
        response = self.client.post(f"{detail}switch/", {"plan": big.pk}, format="json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["traffic_limit_bytes"], 9_500_000)
        self.assertEqual(response.json()["bytes_used"], 1_000_000)
        self.client.post(f"{detail}disable/")
        response = self.client.post(f"{detail}enable/")
        self.assertEqual(response.json()["status"], "active")
        history = self.client.get(f"{detail}history/").json()
        kinds = [e["kind"] for e in history["events"]]
        self.assertEqual(
            kinds,
            ["assigned", "started", "topped_up", "lifted", "switched", "disabled", "enabled"],
        )
        sub = Subscription.objects.get(pk=self.bob_sub.pk)
        self.assertEqual(history["subscription"]["traffic_limit_bytes"], sub.traffic_limit_bytes)
        self.assertEqual(history["subscription"]["status"], sub.status)

    def test_queue_for_a_user_and_permissions(self) -> None:
        nxt = Plan.objects.create(name="Next", traffic_limit_bytes=5_000_000, duration_days=30)
        body = {"user_id": self.alice.pk, "plan": nxt.pk}
        self.login(self.alice)
        self.assertEqual(self.client.post(f"{SUBS}queue/", body, format="json").status_code, 403)
        self.login(self.olga)
        response = self.client.post(f"{SUBS}queue/", body, format="json")
        self.assertEqual(response.status_code, 202, response.content)
        self.assertEqual(QueuedPlan.objects.get(user_id=self.alice.pk).plan, nxt)
        mine = self.client.get(f"{SUBS}{self.alice_sub.pk}/").json()
        self.assertEqual(mine["queued_plan"], nxt.pk)
        # bob is cut off at his quota: the queued plan takes over at once.
        response = self.client.post(
            f"{SUBS}queue/", {"user_id": self.bob.pk, "plan": nxt.pk}, format="json"
        )
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["plan"], nxt.pk)
        self.assertEqual(response.json()["status"], "active")

    def test_user_queues_only_price_free_public_plans_and_cancels(self) -> None:
        paid = Plan.objects.create(name="Paid", traffic_limit_bytes=10, price="3.00")
        free = Plan.objects.create(name="Zero", traffic_limit_bytes=10, price="0")
        self.login(self.alice)
        url = "/api/v1/me/subscription/queue/"
        self.assertEqual(self.client.post(url, {"plan": paid.pk}, format="json").status_code, 400)
        # The free plan is claimed once through claim-free, never queued.
        claimable = Plan.objects.get(name="Free")
        self.assertEqual(
            self.client.post(url, {"plan": claimable.pk}, format="json").status_code, 400
        )
        self.assertEqual(self.client.post(url, {"plan": free.pk}, format="json").status_code, 202)
        self.assertEqual(self.client.delete(url).status_code, 204)
        self.assertEqual(self.client.delete(url).status_code, 404)
        history = self.client.get("/api/v1/me/subscription/history/").json()
        self.assertEqual([e["kind"] for e in history["events"]][-2:], ["queued", "queue_cancelled"])

    def test_plan_api_validates_lifecycle_fields(self) -> None:
        self.login(self.olga)
        response = self.client.post(
            "/api/v1/plans/",
            {"name": "T", "quota_action": "throttle", "reset_cycle": "every_n_days"},
            format="json",
        )
        self.assertEqual(response.status_code, 400)
        response = self.client.post(
            "/api/v1/plans/",
            {
                "name": "T",
                "quota_action": "throttle",
                "throttle_speed_bps": 1000,
                "reset_cycle": "every_n_days",
                "reset_every_days": 7,
                "device_limit": 2,
            },
            format="json",
        )
        self.assertEqual(response.status_code, 201, response.content)


class SubscriptionUrlTests(ApiTestCase):
    def test_userinfo_header_and_summary_match_the_database(self) -> None:
        self.login(self.bob)
        url = self.client.get("/api/v1/me/subscription-url/").json()["url"]
        path = url.split("127.0.0.1:8000", 1)[1]
        response = Client().get(path)
        self.assertEqual(response.status_code, 200)
        sub = Subscription.objects.get(pk=self.bob_sub.pk)
        expected = (
            f"upload={sub.bytes_up}; download={sub.bytes_down}; "
            f"total={sub.traffic_limit_bytes}; expire={int(sub.expires_at.timestamp())}"
        )
        self.assertEqual(response["subscription-userinfo"], expected)
        self.assertContains(response, "status: limited")
        self.assertEqual(response["Content-Type"], "text/plain; charset=utf-8")
        # Same URL on a second call; rotation kills the old one.
        self.assertEqual(self.client.get("/api/v1/me/subscription-url/").json()["url"], url)
        new = self.client.post("/api/v1/me/subscription-url/rotate/").json()["url"]
        self.assertNotEqual(new, url)
        self.assertEqual(Client().get(path).status_code, 404)
        self.assertContains(Client().get(path), "Unknown subscription URL", status_code=404)
        self.assertEqual(Client().get(new.split("127.0.0.1:8000", 1)[1]).status_code, 200)
        self.assertGreaterEqual(len(SubscriptionToken.objects.get(user_id=self.bob.pk).token), 40)

    def test_reading_the_url_never_creates_one(self) -> None:
        self.login(self.charlie)
        response = self.client.get("/api/v1/me/subscription-url/")
        self.assertEqual(response.status_code, 404)
        self.assertIn("rotate", response.json()["detail"])
        self.assertIs(SubscriptionToken.objects.filter(user_id=self.charlie.pk).exists(), False)
        created = self.client.post("/api/v1/me/subscription-url/rotate/").json()["url"]
        self.assertEqual(self.client.get("/api/v1/me/subscription-url/").json()["url"], created)

    def test_no_subscription_answers_zeros(self) -> None:
        token = services.subscription_token_get_or_create(user_id=self.charlie.pk)
        response = Client().get(f"/plans/sub/{token}/")
        self.assertEqual(
            response["subscription-userinfo"], "upload=0; download=0; total=0; expire=0"
        )


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
