from __future__ import annotations

import json

from accounts.models import OutboxEvent, User
from accounts.services import user_create
from goproxy_site.tests.base import ApiTestCase
from plans.models import Subscription, SubscriptionStatus

USERS = "/api/v1/users/"


class UsersPermissionTests(ApiTestCase):
    def test_only_staff_reach_user_management(self) -> None:
        detail = f"{USERS}{self.alice.pk}/"
        calls = [
            ("get", USERS, None),
            ("post", USERS, {"username": "new", "email": "new@example.org"}),
            ("get", detail, None),
            ("patch", detail, {"first_name": "A"}),
            ("put", detail, {"username": "alice", "email": "alice@example.org"}),
            ("delete", detail, None),
            ("get", f"{detail}usage/", None),
        ]
        for who, expected in ((None, 401), (self.alice, 403), (self.bob, 403)):
            self.login(who)
            for method, url, body in calls:
                with self.subTest(user=who, method=method, url=url):
                    response = getattr(self.client, method)(url, body, format="json")
                    self.assertEqual(response.status_code, expected)
                    self.assertIn("detail", response.json())
        self.alice.refresh_from_db()
        self.assertIs(self.alice.is_active, True)
        self.assertEqual(self.alice.first_name, "")

    def test_anonymous_gets_a_token_challenge(self) -> None:
        response = self.client.get(USERS)
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response["WWW-Authenticate"], "Token")

    def test_bad_token_is_401(self) -> None:
        self.client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
        response = self.client.get("/api/v1/plans/")
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["detail"], "Invalid token.")


class UsersListTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login(self.olga)

    def test_it_paginates(self) -> None:
        for i in range(6):
            user_create(username=f"page{i}", email=f"page{i}@example.org")
        first = self.client.get(USERS, {"page_size": 4}).json()
        self.assertEqual(first["count"], 10)
        self.assertEqual(len(first["results"]), 4)
        self.assertIsNone(first["previous"])
        ids = [u["id"] for u in first["results"]]
        self.assertEqual(ids, sorted(ids))
        seen = list(ids)
        url = first["next"]
        for _ in range(5):  # 10 users at 4 per page: two more pages
            if not url:
                break
            page = self.client.get(url).json()
            seen += [u["id"] for u in page["results"]]
            url = page["next"]
        self.assertEqual(len(seen), 10)
        self.assertEqual(len(set(seen)), 10)

    def test_page_past_the_end_is_a_json_404(self) -> None:
        response = self.client.get(USERS, {"page": 99})
        self.assertEqual(response.status_code, 404)
        self.assertIn("detail", response.json())

    def test_page_size_is_capped(self) -> None:
        User.objects.bulk_create(
            User(username=f"bulk{i}", email=f"bulk{i}@example.org") for i in range(200)
        )
        body = self.client.get(USERS, {"page_size": 10_000_000}).json()
        self.assertEqual(body["count"], 204)
        self.assertEqual(len(body["results"]), 200)
        self.assertEqual(len(self.client.get(USERS).json()["results"]), 50)

    def test_it_includes_the_current_subscription(self) -> None:
        results = {u["username"]: u for u in self.client.get(USERS).json()["results"]}
        self.assertEqual(results["alice"]["subscription"]["plan_name"], "Basic")
        self.assertEqual(results["bob"]["subscription"]["status"], "limited")
        self.assertEqual(results["bob"]["subscription"]["bytes_used"], 1_000_000)
        self.assertIsNone(results["charlie"]["subscription"])
        self.assertNotIn("password", results["alice"])

    def test_it_searches_username_and_email(self) -> None:
        user_create(username="zed", email="someone@alice-corp.example")
        names = [
            u["username"] for u in self.client.get(USERS, {"search": "ALICE"}).json()["results"]
        ]
        self.assertEqual(names, ["alice", "zed"])

    def test_it_filters_by_activity_plan_and_status(self) -> None:
        User.objects.filter(pk=self.charlie.pk).update(is_active=False)

        def names(**params: str | int) -> list[str]:
            response = self.client.get(USERS, params)
            self.assertEqual(response.status_code, 200, response.content)
            return [u["username"] for u in response.json()["results"]]

        self.assertEqual(names(is_active="false"), ["charlie"])
        self.assertEqual(names(is_active="true"), ["alice", "bob", "olga"])
        self.assertEqual(names(plan=self.plan.pk), ["alice", "bob"])
        self.assertEqual(names(status="limited"), ["bob"])
        self.assertEqual(names(status="active"), ["alice"])
        self.assertEqual(names(status="none"), ["charlie", "olga"])
        self.assertEqual(names(plan=self.plan.pk, status="active"), ["alice"])

    def test_bad_filters_are_400(self) -> None:
        for params in (
            {"status": "bogus"},
            {"is_active": "maybe"},
            {"plan": "x"},
            {"plan": -1},
            {"plan": 2**80},
        ):
            with self.subTest(params=params):
                response = self.client.get(USERS, params)
                self.assertEqual(response.status_code, 400)
                self.assertIn(next(iter(params)), response.json())


class UsersCreateTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login(self.olga)

    def test_it_creates_a_user(self) -> None:
        response = self.client.post(
            USERS,
            {
                "username": "dave",
                "email": "Dave@Example.ORG",
                "password": "correct horse battery",
                "first_name": "Dave",
            },
            format="json",
        )
        self.assertEqual(response.status_code, 201, response.content)
        body = response.json()
        self.assertNotIn("password", body)
        self.assertEqual(body["email"], "Dave@example.org")
        self.assertIs(body["is_active"], True)
        self.assertIsNone(body["subscription"])
        dave = User.objects.get(pk=body["id"])
        self.assertEqual(dave.first_name, "Dave")
        self.assertIs(dave.check_password("correct horse battery"), True)

    def test_password_is_optional(self) -> None:
        response = self.client.post(
            USERS, {"username": "eve", "email": "eve@example.org"}, format="json"
        )
        self.assertEqual(response.status_code, 201)
        self.assertIs(User.objects.get(username="eve").has_usable_password(), False)

    def test_duplicates_are_409(self) -> None:
        cases = [
            ({"username": "alice", "email": "x1@example.org"}, "username"),
            ({"username": "ALICE", "email": "x2@example.org"}, "username"),
            ({"username": "frank", "email": "ALICE@example.org"}, "email"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                response = self.client.post(USERS, body, format="json")
                self.assertEqual(response.status_code, 409, response.content)
                self.assertIn("already exists", response.json()[field][0])
        self.assertEqual(User.objects.count(), 4)

    def test_invalid_input_is_400_by_field(self) -> None:
        cases = [
            ({"username": "gina", "email": "not-an-email"}, "email"),
            ({"username": "gina"}, "email"),
            ({"username": "gi na", "email": "gina@example.org"}, "username"),
            ({"username": "", "email": "gina@example.org"}, "username"),
            ({"username": "g" * 151, "email": "gina@example.org"}, "username"),
            ({"username": "gina", "email": "gina@example.org", "password": "short"}, "password"),
            (
                {"username": "gina", "email": "gina@example.org", "password": "12345678901"},
                "password",
            ),
            (
                {"username": "gina", "email": "gina@example.org", "password": "gina@example.org"},
                "password",
            ),
            ({"username": ["gina"], "email": "gina@example.org"}, "username"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                response = self.client.post(USERS, body, format="json")
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn(field, response.json())
        self.assertIs(User.objects.filter(username="gina").exists(), False)

    def test_a_duplicate_with_another_error_is_400(self) -> None:
        response = self.client.post(USERS, {"username": "alice", "email": "broken"}, format="json")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(set(response.json()), {"username", "email"})

    def test_malformed_bodies_are_400_or_415(self) -> None:
        response = self.client.post(USERS, "{not json", content_type="application/json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("JSON parse error", response.json()["detail"])
        response = self.client.post(USERS, "[1, 2]", content_type="application/json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("non_field_errors", response.json())
        response = self.client.post(USERS, "<x/>", content_type="application/xml")
        self.assertEqual(response.status_code, 415)
        self.assertIn("detail", response.json())

    def test_hostile_bodies_get_json_errors(self) -> None:
        deep = "[" * 100_000 + "]" * 100_000
        response = self.client.post(USERS, deep, content_type="application/json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("nested too deeply", response.json()["detail"])
        huge = json.dumps({"username": "x" * 3_000_000, "email": "a@example.org"})
        response = self.client.post(USERS, huge, content_type="application/json")
        self.assertEqual(response.status_code, 413)
        self.assertIn("too large", response.json()["detail"])
        response = self.client.post(
            USERS, {"username": "nul\x00l", "email": "n@example.org"}, format="json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("Null characters", str(response.json()["username"]))
        self.assertEqual(self.client.get(USERS, {"search": "\x00"}).status_code, 400)

    def test_read_only_fields_are_ignored(self) -> None:
        response = self.client.post(
            USERS,
            {"username": "hal", "email": "hal@example.org", "is_staff": True, "is_active": False},
            format="json",
        )
        self.assertEqual(response.status_code, 201)
        hal = User.objects.get(username="hal")
        self.assertIs(hal.is_staff, False)
        self.assertIs(hal.is_active, True)


class UsersUpdateTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login(self.olga)
        self.url = f"{USERS}{self.charlie.pk}/"

    def test_partial_update(self) -> None:
        response = self.client.patch(
            self.url, {"first_name": "Charles", "email": "c@example.net"}, format="json"
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.charlie.refresh_from_db()
        self.assertEqual(
            (self.charlie.first_name, self.charlie.email), ("Charles", "c@example.net")
        )

    def test_full_update_needs_username_and_email(self) -> None:
        response = self.client.put(self.url, {"first_name": "C"}, format="json")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(set(response.json()), {"username", "email"})
        response = self.client.put(
            self.url,
            {"username": "charles", "email": "charlie@example.org", "password": "new secret pw 9"},
            format="json",
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.charlie.refresh_from_db()
        self.assertEqual(self.charlie.username, "charles")
        self.assertIs(self.charlie.check_password("new secret pw 9"), True)

    def test_keeping_own_email_is_not_a_duplicate(self) -> None:
        response = self.client.patch(self.url, {"email": "CHARLIE@example.org"}, format="json")
        self.assertEqual(response.status_code, 200, response.content)

    def test_taking_another_users_email_or_name_is_409(self) -> None:
        for body in ({"email": "Bob@example.org"}, {"username": "Bob"}):
            with self.subTest(body=body):
                response = self.client.patch(self.url, body, format="json")
                self.assertEqual(response.status_code, 409, response.content)
        self.charlie.refresh_from_db()
        self.assertEqual(self.charlie.email, "charlie@example.org")

    def test_unknown_and_malformed_ids_are_json_404(self) -> None:
        for url in (f"{USERS}999999/", f"{USERS}abc/", f"{USERS}99999999999999999999999/"):
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 404)
                self.assertIn("detail", response.json())


class UsersDeleteTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login(self.olga)

    def test_delete_deactivates_revokes_and_disables(self) -> None:
        response = self.client.delete(f"{USERS}{self.alice.pk}/")
        self.assertEqual(response.status_code, 204)
        self.alice.refresh_from_db()
        self.assertIs(self.alice.is_active, False)
        self.assertIs(self.alice.proxy_credentials.filter(revoked_at__isnull=True).exists(), False)
        current = Subscription.objects.get(user_id=self.alice.pk, is_current=True)
        self.assertEqual(current.status, SubscriptionStatus.DISABLED)
        # UserDeactivated is queued in the outbox, in the same transaction.
        events = [json.loads(e.payload) for e in OutboxEvent.objects.all()]
        deactivated = [e for e in events if e["type"] == "UserDeactivated"]
        self.assertEqual([e["payload"]["user_id"] for e in deactivated], [self.alice.pk])
        # The row stays, so plans rows never point at nothing.
        self.assertEqual(self.client.get(f"{USERS}{self.alice.pk}/").json()["is_active"], False)
        # Deleting again is harmless, and alice's token no longer works.
        self.assertEqual(self.client.delete(f"{USERS}{self.alice.pk}/").status_code, 204)
        self.login(self.alice)
        self.assertEqual(self.client.get("/api/v1/me/").status_code, 401)

    def test_user_without_plan_can_be_deleted(self) -> None:
        self.assertEqual(self.client.delete(f"{USERS}{self.charlie.pk}/").status_code, 204)
        self.assertIs(Subscription.objects.filter(user_id=self.charlie.pk).exists(), False)

    def test_staff_cannot_delete_themselves(self) -> None:
        response = self.client.delete(f"{USERS}{self.olga.pk}/")
        self.assertEqual(response.status_code, 403)
        self.assertIn("own account", response.json()["detail"])
        self.olga.refresh_from_db()
        self.assertIs(self.olga.is_active, True)
