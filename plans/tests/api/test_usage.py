from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from goproxy_site.events.schemas import UserConsumedTrafficEvent
from goproxy_site.tests.base import ApiTestCase
from plans.models import Plan, Subscription
from plans.services import plan_assign, traffic_apply_batch

USAGE = "/api/v1/me/usage/"


def _traffic(user_id: int, rows: list[tuple[datetime, int, int]], seq0: int = 1) -> None:
    traffic_apply_batch(
        deltas=[
            UserConsumedTrafficEvent(
                user_id=user_id,
                bytes_up=up,
                bytes_down=down,
                instance_id="test-proxy",
                seq=seq0 + i,
                occurred_at=at,
            )
            for i, (at, up, down) in enumerate(rows)
        ]
    )


class UsageApiTests(ApiTestCase):
    big: Plan
    start: datetime
    dave_sub: Subscription
    rows: list[tuple[datetime, int, int]]

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.big = Plan.objects.create(name="Big", duration_days=30)
        now = timezone.now()
        # 01:00 three days ago: the rows below fall in known hours and days.
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        cls.start = midnight - timedelta(days=3) + timedelta(hours=1)
        cls.dave_sub = plan_assign(user_id=cls.charlie.pk, plan=cls.big, now=cls.start)
        cls.rows = [
            (cls.start + timedelta(minutes=5), 100, 1_000),
            (cls.start + timedelta(minutes=40), 50, 500),
            (cls.start + timedelta(hours=2), 7, 70),
            (cls.start + timedelta(days=1, hours=1), 3, 30),
            (now - timedelta(minutes=1), 11, 110),
        ]
        _traffic(cls.charlie.pk, cls.rows)

    def test_series_sums_equal_the_subscription_totals(self) -> None:
        self.login(self.charlie)
        sub = self.client.get("/api/v1/me/subscription/").json()
        for granularity in ("hour", "day"):
            with self.subTest(granularity=granularity):
                body = self.client.get(USAGE, {"granularity": granularity}).json()
                up = sum(p["bytes_up"] for p in body["points"])
                down = sum(p["bytes_down"] for p in body["points"])
                self.assertEqual((up, down), (sub["bytes_up"], sub["bytes_down"]))
                self.assertEqual(body["total"]["bytes_total"], sub["bytes_used"])
                self.assertEqual(sub["bytes_used"], sum(r[1] + r[2] for r in self.rows))
                for p in body["points"]:
                    self.assertEqual(p["bytes_total"], p["bytes_up"] + p["bytes_down"])
        hourly = self.client.get(USAGE, {"granularity": "hour"}).json()["points"]
        self.assertEqual(len(hourly), 4)  # the first two rows share an hour
        self.assertEqual((hourly[0]["bytes_up"], hourly[0]["bytes_down"]), (150, 1_500))
        daily = self.client.get(USAGE, {"granularity": "day"}).json()["points"]
        self.assertEqual(len(daily), 3)
        self.assertEqual(daily[0]["bytes_up"], 157)

    def test_window_is_half_open(self) -> None:
        self.login(self.charlie)
        hour0 = self.start.replace(minute=0, second=0, microsecond=0)
        body = self.client.get(
            USAGE,
            {"from": hour0.isoformat(), "to": (hour0 + timedelta(hours=2)).isoformat()},
        ).json()
        self.assertEqual(
            body["total"], {"bytes_up": 150, "bytes_down": 1_500, "bytes_total": 1_650}
        )
        body = self.client.get(
            USAGE, {"from": (hour0 + timedelta(hours=2)).isoformat(), "granularity": "hour"}
        ).json()
        self.assertEqual(body["total"]["bytes_up"], 7 + 3 + 11)

    def test_default_window_is_the_current_subscription(self) -> None:
        # A new plan starts at zero; older traffic stays out of the default series.
        plan_assign(user_id=self.charlie.pk, plan=self.big)
        self.login(self.charlie)
        body = self.client.get(USAGE).json()
        self.assertLessEqual(body["total"]["bytes_total"], 121)
        history = self.client.get(USAGE, {"from": "2000-01-01"}).json()
        self.assertEqual(history["total"]["bytes_total"], sum(r[1] + r[2] for r in self.rows))

    def test_bad_parameters_are_400(self) -> None:
        self.login(self.charlie)
        cases = [
            ({"granularity": "minute"}, "granularity"),
            ({"from": "yesterday"}, "from"),
            ({"to": "2026-13-45"}, "to"),
            ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
            ({"from": "2026-01-01", "to": "2026-01-01"}, "to"),
            ({"to": "2000-01-01T00:00:00Z"}, "to"),
        ]
        for params, field in cases:
            with self.subTest(params=params):
                response = self.client.get(USAGE, params)
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn(field, response.json())

    def test_extreme_dates_do_not_crash(self) -> None:
        self.login(self.charlie)
        for params in (
            {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"},
            {"to": "9999-12-31T23:59:59-12:00"},
            {"from": "0001-01-01T00:00:00+14:00"},
        ):
            with self.subTest(params=params):
                response = self.client.get(USAGE, params)
                self.assertIn(response.status_code, (200, 400))
                self.assertIsInstance(response.json(), dict)

    def test_a_user_without_traffic_gets_an_empty_series(self) -> None:
        self.login(self.alice)
        body = self.client.get(USAGE).json()
        self.assertEqual((body["points"], body["total"]["bytes_total"]), ([], 0))

    def test_staff_read_any_users_series_users_only_their_own(self) -> None:
        url = f"/api/v1/users/{self.charlie.pk}/usage/"
        self.login(self.charlie)
        own = self.client.get(USAGE, {"granularity": "day"}).json()
        self.assertEqual(self.client.get(url).status_code, 403)
        self.login(self.alice)
        self.assertEqual(self.client.get(url).status_code, 403)
        self.assertEqual(self.client.get(USAGE).json()["user_id"], self.alice.pk)
        self.login(None)
        self.assertEqual(self.client.get(url).status_code, 401)
        self.assertEqual(self.client.get(USAGE).status_code, 401)
        self.login(self.olga)
        self.assertEqual(self.client.get(url, {"granularity": "day"}).json(), own)
        self.assertEqual(self.client.get("/api/v1/users/999999/usage/").status_code, 404)
        current = Subscription.objects.get(user_id=self.charlie.pk, is_current=True)
        self.assertEqual(own["total"]["bytes_total"], current.bytes_used)
