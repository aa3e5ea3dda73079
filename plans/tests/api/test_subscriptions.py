from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import api_token_issue, user_create
from goproxy_site.tests.base import ApiTestCase
from plans import services
from plans.models import (
    FreePlanClaim,
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionStatus,
    SubscriptionToken,
)
from plans.services import plan_assign

SUBS = "/api/v1/subscriptions/"
CLAIM = "/api/v1/me/subscription/claim-free/"
MINE = "/api/v1/me/subscription/"


class SubscriptionsPermissionTests(ApiTestCase):
    def test_only_staff_manage_subscriptions(self) -> None:
        detail = f"{SUBS}{self.alice_sub.pk}/"
        calls = [
            ("get", SUBS, None),
            ("post", SUBS, {"user_id": self.charlie.pk, "plan": self.plan.pk}),
            ("get", detail, None),
            ("post", f"{detail}extend/", {"days": 3}),
            ("post", f"{detail}reset-usage/", None),
            ("post", f"{detail}disable/", None),
        ]
        for who, expected in ((None, 401), (self.alice, 403), (self.charlie, 403)):
            self.login(who)
            for method, url, body in calls:
                with self.subTest(user=who, url=url, method=method):
                    response = getattr(self.client, method)(url, body, format="json")
                    self.assertEqual(response.status_code, expected)
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.status, SubscriptionStatus.ACTIVE)
        self.assertIs(Subscription.objects.filter(user_id=self.charlie.pk).exists(), False)


class SubscriptionsStaffTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login(self.olga)

    def test_list_and_filter(self) -> None:
        plan_assign(user_id=self.alice.pk, plan=self.plan)  # alice's first one becomes history

        def ids(**params: str | int) -> list[int]:
            response = self.client.get(SUBS, params)
            self.assertEqual(response.status_code, 200, response.content)
            return [s["user_id"] for s in response.json()["results"]]

        self.assertEqual(len(ids()), 3)
        self.assertEqual(ids(user_id=self.alice.pk), [self.alice.pk, self.alice.pk])
        self.assertEqual(ids(user_id=self.alice.pk, is_current="true"), [self.alice.pk])
        self.assertEqual(ids(is_current="false"), [self.alice.pk])
        self.assertEqual(ids(status="limited"), [self.bob.pk])
        self.assertEqual(
            sorted(ids(plan=self.plan.pk, is_current=True)), [self.alice.pk, self.bob.pk]
        )
        for bad in ({"status": "nope"}, {"user_id": "x"}, {"is_current": "perhaps"}):
            with self.subTest(bad=bad):
                self.assertEqual(self.client.get(SUBS, bad).status_code, 400)

    def test_assign_a_plan(self) -> None:
        response = self.client.post(
            SUBS, {"user_id": self.charlie.pk, "plan": self.plan.pk}, format="json"
        )
        self.assertEqual(response.status_code, 201, response.content)
        body = response.json()
        self.assertEqual((body["user_id"], body["plan_name"]), (self.charlie.pk, "Basic"))
        self.assertEqual(
            (body["status"], body["bytes_used"], body["is_current"]), ("active", 0, True)
        )
        # Reassigning replaces the current subscription: still exactly one current row.
        response = self.client.post(
            SUBS, {"user_id": self.bob.pk, "plan": self.plan.pk}, format="json"
        )
        self.assertEqual(response.status_code, 201)
        self.assertEqual(
            Subscription.objects.filter(user_id=self.bob.pk, is_current=True).count(), 1
        )

    def test_assign_rejects_unknown_or_inactive_users_and_plans(self) -> None:
        User.objects.filter(pk=self.charlie.pk).update(is_active=False)
        cases = [
            ({"user_id": 987654, "plan": self.plan.pk}, "user_id"),
            ({"user_id": self.charlie.pk, "plan": self.plan.pk}, "user_id"),
            ({"user_id": self.alice.pk, "plan": 987654}, "plan"),
            ({"user_id": self.alice.pk, "plan": "Basic"}, "plan"),
            ({"user_id": self.alice.pk, "plan": 2**80}, "plan"),
            ({"user_id": 2**80, "plan": self.plan.pk}, "user_id"),
            ({"user_id": -1, "plan": self.plan.pk}, "user_id"),
            ({"plan": self.plan.pk}, "user_id"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                response = self.client.post(SUBS, body, format="json")
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn(field, response.json())
        self.assertEqual(Subscription.objects.count(), 2)

    def test_extend(self) -> None:
        before = self.alice_sub.expires_at
        response = self.client.post(
            f"{SUBS}{self.alice_sub.pk}/extend/", {"days": 5}, format="json"
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.alice_sub.refresh_from_db()
        assert self.alice_sub.expires_at is not None and before is not None
        self.assertEqual(self.alice_sub.expires_at - before, timedelta(days=5))
        for days in (0, -3, 10**6, "x", None):
            with self.subTest(days=days):
                response = self.client.post(
                    f"{SUBS}{self.alice_sub.pk}/extend/", {"days": days}, format="json"
                )
                self.assertEqual(response.status_code, 400)
                self.assertIn("days", response.json())

    def test_extend_without_expiry_is_400(self) -> None:
        forever = Plan.objects.create(name="Forever", duration_days=None)
        sub = plan_assign(user_id=self.charlie.pk, plan=forever)
        response = self.client.post(f"{SUBS}{sub.pk}/extend/", {"days": 1}, format="json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("no expiry", response.json()["non_field_errors"][0])

    def test_reset_usage_reactivates_a_limited_subscription(self) -> None:
        response = self.client.post(f"{SUBS}{self.bob_sub.pk}/reset-usage/")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual((response.json()["status"], response.json()["bytes_used"]), ("active", 0))

    def test_disable(self) -> None:
        response = self.client.post(f"{SUBS}{self.alice_sub.pk}/disable/")
        self.assertEqual(response.status_code, 200)
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.status, SubscriptionStatus.DISABLED)

    def test_history_rows_cannot_be_changed(self) -> None:
        plan_assign(user_id=self.alice.pk, plan=self.plan)
        for action in ("extend/", "reset-usage/", "disable/"):
            with self.subTest(action=action):
                response = self.client.post(
                    f"{SUBS}{self.alice_sub.pk}/{action}", {"days": 1}, format="json"
                )
                self.assertEqual(response.status_code, 409)
                self.assertIn("current subscription", response.json()["detail"])

    def test_unknown_subscription_is_404(self) -> None:
        self.assertEqual(self.client.post(f"{SUBS}99999/disable/").status_code, 404)


class MySubscriptionTests(ApiTestCase):
    def test_it_shows_only_the_callers_subscription(self) -> None:
        self.assertEqual(self.client.get(MINE).status_code, 401)
        self.login(self.alice)
        body = self.client.get(MINE).json()
        self.assertEqual((body["id"], body["user_id"]), (self.alice_sub.pk, self.alice.pk))
        self.login(self.bob)
        self.assertEqual(self.client.get(MINE).json()["id"], self.bob_sub.pk)
        self.login(self.charlie)
        response = self.client.get(MINE)
        self.assertEqual(response.status_code, 404)
        self.assertIn("no current subscription", response.json()["detail"])


class ClaimFreeTests(ApiTestCase):
    free: Plan

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        # The migration's "Free" plan may be gone after a transactional test flushed the DB.
        Plan.objects.filter(is_free=True).update(is_public=False)
        cls.free = Plan.objects.create(
            name="Trial", traffic_limit_bytes=200_000_000, duration_days=1, is_free=True
        )

    def test_a_free_plan_is_claimable_exactly_once(self) -> None:
        self.login(self.charlie)
        response = self.client.post(CLAIM, {"plan": self.free.pk}, format="json")
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["plan_name"], "Trial")
        self.assertEqual(self.client.get(MINE).json()["plan_name"], "Trial")
        # Even after the free subscription expired, a second claim is a conflict.
        Subscription.objects.filter(user_id=self.charlie.pk).update(
            status=SubscriptionStatus.EXPIRED, expires_at=timezone.now()
        )
        for _ in range(2):
            response = self.client.post(CLAIM, {"plan": self.free.pk}, format="json")
            self.assertEqual(response.status_code, 409)
            self.assertIn("already claimed", response.json()["detail"])
        self.assertEqual(FreePlanClaim.objects.filter(user_id=self.charlie.pk).count(), 1)
        self.assertEqual(Subscription.objects.filter(user_id=self.charlie.pk).count(), 1)

    def test_the_default_free_plan_is_used_when_none_is_named(self) -> None:
        self.login(self.charlie)
        response = self.client.post(CLAIM, {}, format="json")
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["plan"], self.free.pk)

    def test_only_public_free_plans(self) -> None:
        hidden = Plan.objects.create(name="Secret free", is_free=True, is_public=False)
        self.login(self.charlie)
        for plan_id, status in (
            (self.plan.pk, 400),
            (hidden.pk, 400),
            (999999, 400),
            ("x", 400),
            (2**80, 400),
        ):
            with self.subTest(plan=plan_id):
                response = self.client.post(CLAIM, {"plan": plan_id}, format="json")
                self.assertEqual(response.status_code, status, response.content)
                self.assertIn("plan", response.json())
        self.assertIs(Subscription.objects.filter(user_id=self.charlie.pk).exists(), False)
        self.assertIs(FreePlanClaim.objects.filter(user_id=self.charlie.pk).exists(), False)

    def test_a_running_plan_is_not_replaced(self) -> None:
        self.login(self.alice)
        response = self.client.post(CLAIM, {"plan": self.free.pk}, format="json")
        self.assertEqual(response.status_code, 409)
        self.alice_sub.refresh_from_db()
        self.assertIs(self.alice_sub.is_current, True)
        self.assertIs(FreePlanClaim.objects.filter(user_id=self.alice.pk).exists(), False)

    def test_anonymous_cannot_claim(self) -> None:
        self.assertEqual(self.client.post(CLAIM, {}, format="json").status_code, 401)

    def test_an_unverified_address_gets_403_saying_why(self) -> None:
        dora = user_create(username="dora", email="dora@example.org", password="pw-dora-123")
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=dora)[0]}")
        response = self.client.post(CLAIM, {}, format="json")
        self.assertEqual(response.status_code, 403)
        self.assertIn("Verify your e-mail address first", response.json()["detail"])
        self.assertIs(FreePlanClaim.objects.filter(user_id=dora.pk).exists(), False)

    def test_one_mailbox_claims_once_across_accounts(self) -> None:
        first = user_create(
            username="g1", email="first.last@gmail.com", password="pw-g1-12345", email_verified=True
        )
        second = user_create(
            username="g2",
            email="FirstLast+2@googlemail.com",
            password="pw-g2-12345",
            email_verified=True,
        )
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=first)[0]}")
        self.assertEqual(self.client.post(CLAIM, {}, format="json").status_code, 201)
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=second)[0]}")
        response = self.client.post(CLAIM, {}, format="json")
        self.assertEqual(response.status_code, 409)
        self.assertIn("once per person", response.json()["detail"])


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


class SubscriptionUrlTests(ApiTestCase):
    def test_userinfo_header_and_summary_match_the_database(self) -> None:
        self.login(self.bob)
        url = self.client.get("/api/v1/me/subscription-url/").json()["url"]
        path = url.split("127.0.0.1:8000", 1)[1]
        response = Client().get(path)
        self.assertEqual(response.status_code, 200)
        sub = Subscription.objects.get(pk=self.bob_sub.pk)
        assert sub.expires_at is not None
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
