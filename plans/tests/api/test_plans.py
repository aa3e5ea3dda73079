from __future__ import annotations

from goproxy_site.tests.base import ApiTestCase
from plans.models import Feature, Plan
from plans.services import plan_assign

PLANS = "/api/v1/plans/"


class PlansApiTests(ApiTestCase):
    hidden: Plan

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.hidden = Plan.objects.create(name="Internal", traffic_limit_bytes=10, is_public=False)

    def _body(self, **overrides: object) -> dict[str, object]:
        body: dict[str, object] = {
            "name": "Pro",
            "traffic_limit_bytes": 50_000_000_000,
            "duration_days": 30,
            "price": "19.90",
            "currency": "EUR",
            "max_connections": 50,
            "features": [{"name": "https", "description": "CONNECT tunnels"}, {"name": "ipv6"}],
        }
        body.update(overrides)
        return body

    def test_anyone_reads_public_plans_staff_see_all(self) -> None:
        for who in (None, self.alice):
            self.login(who)
            names = [p["name"] for p in self.client.get(PLANS).json()["results"]]
            self.assertIn("Basic", names)
            self.assertNotIn("Internal", names)
            self.assertEqual(self.client.get(f"{PLANS}{self.hidden.pk}/").status_code, 404)
        self.login(self.olga)
        names = [p["name"] for p in self.client.get(PLANS).json()["results"]]
        self.assertIn("Internal", names)
        self.assertEqual(self.client.get(f"{PLANS}{self.hidden.pk}/").status_code, 200)

    def test_only_staff_write(self) -> None:
        url = f"{PLANS}{self.plan.pk}/"
        for who, expected in ((None, 401), (self.alice, 403)):
            self.login(who)
            for method, path, body in (
                ("post", PLANS, self._body()),
                ("patch", url, {"price": "0.01"}),
                ("put", url, self._body(name="Basic")),
                ("delete", url, None),
            ):
                with self.subTest(user=who, method=method):
                    response = getattr(self.client, method)(path, body, format="json")
                    self.assertEqual(response.status_code, expected)
        self.plan.refresh_from_db()
        self.assertEqual(str(self.plan.price), "5.00")
        self.assertIs(Plan.objects.filter(name="Pro").exists(), False)

    def test_staff_create_with_features(self) -> None:
        Feature.objects.create(name="ipv6", description="old text")
        self.login(self.olga)
        response = self.client.post(PLANS, self._body(), format="json")
        self.assertEqual(response.status_code, 201, response.content)
        body = response.json()
        self.assertEqual(body["price"], "19.90")
        self.assertEqual(
            sorted((f["name"], f["description"]) for f in body["features"]),
            [("https", "CONNECT tunnels"), ("ipv6", "old text")],
        )
        plan = Plan.objects.get(pk=body["id"])
        self.assertEqual(plan.features.count(), 2)
        self.assertEqual(Feature.objects.filter(name="ipv6").count(), 1)
        # Anonymous visitors see it in the catalogue.
        self.login(None)
        self.assertEqual(self.client.get(f"{PLANS}{plan.pk}/").json()["name"], "Pro")

    def test_staff_update_replaces_features_only_when_given(self) -> None:
        self.login(self.olga)
        plan_id = self.client.post(PLANS, self._body(), format="json").json()["id"]
        url = f"{PLANS}{plan_id}/"
        body = self.client.patch(url, {"price": "9.00"}, format="json").json()
        self.assertEqual(len(body["features"]), 2)
        body = self.client.patch(url, {"features": [{"name": "socks"}]}, format="json").json()
        self.assertEqual([f["name"] for f in body["features"]], ["socks"])
        self.assertEqual(body["price"], "9.00")
        body = self.client.put(url, self._body(features=[]), format="json").json()
        self.assertEqual(body["features"], [])

    def test_invalid_plans_are_400_by_field(self) -> None:
        self.login(self.olga)
        cases: list[tuple[dict[str, object], str]] = [
            ({"traffic_limit_bytes": -1}, "traffic_limit_bytes"),
            ({"traffic_limit_bytes": 0}, "traffic_limit_bytes"),
            ({"traffic_limit_bytes": 2**63}, "traffic_limit_bytes"),
            ({"duration_days": 0}, "duration_days"),
            ({"duration_days": 10**9}, "duration_days"),
            ({"price": "-1"}, "price"),
            ({"price": "NaN"}, "price"),
            ({"price": "1e40"}, "price"),
            ({"currency": "usd"}, "currency"),
            ({"is_free": True}, "price"),
            ({"max_connections": -5}, "max_connections"),
            ({"speed_limit_bps": 0}, "speed_limit_bps"),
            ({"name": ""}, "name"),
            ({"name": "x" * 101}, "name"),
            ({"features": [{"name": "a"}, {"name": "a"}]}, "features"),
            ({"features": [{"description": "no name"}]}, "features"),
            ({"features": "https"}, "features"),
        ]
        for overrides, field in cases:
            with self.subTest(overrides=overrides):
                response = self.client.post(PLANS, self._body(**overrides), format="json")
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn(field, response.json())
        self.assertIs(Plan.objects.filter(name="Pro").exists(), False)

    def test_free_plan_with_zero_price_is_fine(self) -> None:
        self.login(self.olga)
        response = self.client.post(
            PLANS, self._body(name="Trial", price="0", is_free=True), format="json"
        )
        self.assertEqual(response.status_code, 201, response.content)
        # Turning it into a paid plan while still free is refused.
        response = self.client.patch(
            f"{PLANS}{response.json()['id']}/", {"price": "3.00"}, format="json"
        )
        self.assertEqual(response.status_code, 400)

    def test_duplicate_name_is_409(self) -> None:
        self.login(self.olga)
        response = self.client.post(PLANS, self._body(name="Basic"), format="json")
        self.assertEqual(response.status_code, 409)
        self.assertIn("name", response.json())

    def test_delete_unused_plan_but_not_one_in_use(self) -> None:
        self.login(self.olga)
        response = self.client.delete(f"{PLANS}{self.plan.pk}/")
        self.assertEqual(response.status_code, 409)
        self.assertIn("non-public", response.json()["detail"])
        self.assertIs(Plan.objects.filter(pk=self.plan.pk).exists(), True)
        self.assertEqual(self.client.delete(f"{PLANS}{self.hidden.pk}/").status_code, 204)
        self.assertIs(Plan.objects.filter(pk=self.hidden.pk).exists(), False)

    def test_limit_changes_do_not_touch_running_subscriptions(self) -> None:
        self.login(self.olga)
        response = self.client.patch(
            f"{PLANS}{self.plan.pk}/", {"traffic_limit_bytes": 5}, format="json"
        )
        self.assertEqual(response.status_code, 200)
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.traffic_limit_bytes, 1_000_000)
        new = plan_assign(user_id=self.charlie.pk, plan=Plan.objects.get(pk=self.plan.pk))
        self.assertEqual(new.traffic_limit_bytes, 5)

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
