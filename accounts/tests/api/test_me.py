from __future__ import annotations

from django.test import override_settings

from accounts.models import ProxyCredential
from accounts.selectors import credential_authenticate
from goproxy_site.tests.base import ApiTestCase

ME = "/api/v1/me/"
CREDS = "/api/v1/me/credentials/"


class MeTests(ApiTestCase):
    def test_anonymous_is_401(self) -> None:
        for method in ("get", "patch", "put"):
            with self.subTest(method=method):
                self.assertEqual(getattr(self.client, method)(ME).status_code, 401)

    def test_it_shows_the_callers_profile(self) -> None:
        for user in (self.alice, self.olga):
            self.login(user)
            body = self.client.get(ME).json()
            self.assertEqual((body["id"], body["username"]), (user.pk, user.username))
            self.assertIs(body["is_staff"], user.is_staff)
            self.assertNotIn("password", body)

    def test_it_updates_name_and_email_only(self) -> None:
        self.login(self.alice)
        response = self.client.patch(
            ME, {"first_name": "Alice", "username": "root", "is_staff": True}, format="json"
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.alice.refresh_from_db()
        self.assertEqual(self.alice.first_name, "Alice")
        self.assertEqual(self.alice.username, "alice")
        self.assertIs(self.alice.is_staff, False)

    def test_email_must_be_valid_and_free(self) -> None:
        self.login(self.alice)
        self.assertEqual(self.client.patch(ME, {"email": "nope"}, format="json").status_code, 400)
        response = self.client.patch(ME, {"email": "BOB@example.org"}, format="json")
        self.assertEqual(response.status_code, 409)
        self.assertIn("email", response.json())
        self.alice.refresh_from_db()
        self.assertEqual(self.alice.email, "alice@example.org")


class CredentialsTests(ApiTestCase):
    def test_anonymous_is_401(self) -> None:
        self.assertEqual(self.client.get(CREDS).status_code, 401)
        self.assertEqual(self.client.post(CREDS, {}, format="json").status_code, 401)

    def test_list_never_shows_secrets(self) -> None:
        self.login(self.alice)
        body = self.client.get(CREDS).json()
        self.assertEqual([c["login"] for c in body["results"]], ["alice-proxy"])
        self.assertNotIn("secret", body["results"][0])
        self.assertNotIn("secret_hash", body["results"][0])
        self.assertNotIn(self.alice_cred.secret, str(body))

    def test_the_secret_is_shown_exactly_once(self) -> None:
        self.login(self.charlie)
        response = self.client.post(CREDS, {"login": "charlie-px"}, format="json")
        self.assertEqual(response.status_code, 201, response.content)
        issued = response.json()
        secret = issued["secret"]
        self.assertGreaterEqual(len(secret), 40)
        credential = credential_authenticate(login="charlie-px", secret=secret)
        assert credential is not None
        self.assertEqual(credential.pk, issued["id"])
        # Nothing that can be read later carries the secret again.
        for url in (CREDS, f"{CREDS}{issued['id']}/", ME):
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 200)
                self.assertNotIn(secret, response.content.decode())
                self.assertNotIn("secret", response.json())
        self.assertNotIn(secret, ProxyCredential.objects.get(pk=issued["id"]).secret_hash)

    def test_login_is_generated_when_omitted(self) -> None:
        self.login(self.charlie)
        response = self.client.post(CREDS, {}, format="json")
        self.assertEqual(response.status_code, 201)
        self.assertTrue(response.json()["login"].startswith("charlie-"))

    def test_rotate_replaces_the_secret(self) -> None:
        self.login(self.alice)
        url = f"{CREDS}{self.alice_cred.credential.pk}/rotate/"
        response = self.client.post(url)
        self.assertEqual(response.status_code, 200, response.content)
        new_secret = response.json()["secret"]
        self.assertNotEqual(new_secret, self.alice_cred.secret)
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        self.assertIsNotNone(credential_authenticate(login="alice-proxy", secret=new_secret))

    def test_delete_revokes(self) -> None:
        self.login(self.alice)
        url = f"{CREDS}{self.alice_cred.credential.pk}/"
        self.assertEqual(self.client.delete(url).status_code, 204)
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        body = self.client.get(url).json()
        self.assertIs(body["is_revoked"], True)
        self.assertEqual(self.client.get(CREDS, {"active": "true"}).json()["count"], 0)
        self.assertEqual(self.client.get(CREDS).json()["count"], 1)
        # A revoked credential cannot be rotated back to life.
        response = self.client.post(f"{url}rotate/")
        self.assertEqual(response.status_code, 400)
        self.assertIn("revoked", response.json()["non_field_errors"][0])

    def test_other_users_credentials_are_invisible(self) -> None:
        url = f"{CREDS}{self.alice_cred.credential.pk}/"
        for user in (self.bob, self.olga):
            self.login(user)
            for method, path in (("get", url), ("delete", url), ("post", f"{url}rotate/")):
                with self.subTest(user=user.username, method=method):
                    response = getattr(self.client, method)(path)
                    self.assertEqual(response.status_code, 404)
            self.assertEqual(self.client.get(CREDS).json()["count"], 0)
        self.assertIsNotNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )

    def test_duplicate_login_is_409(self) -> None:
        self.login(self.bob)
        response = self.client.post(CREDS, {"login": "alice-proxy"}, format="json")
        self.assertEqual(response.status_code, 409)
        self.assertIn("taken", response.json()["login"][0])

    def test_invalid_login_is_400(self) -> None:
        self.login(self.bob)
        for login in ("UPPER", "a:b", "x", "y" * 65, "", "évé", 7):
            with self.subTest(login=login):
                response = self.client.post(CREDS, {"login": login}, format="json")
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn("login", response.json())
        self.assertEqual(ProxyCredential.objects.filter(user=self.bob).count(), 0)

    @override_settings(API_MAX_LIVE_CREDENTIALS=2)
    def test_live_credentials_are_capped(self) -> None:
        self.login(self.bob)
        for _ in range(2):
            self.assertEqual(self.client.post(CREDS, {}, format="json").status_code, 201)
        response = self.client.post(CREDS, {}, format="json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("revoke one", response.json()["non_field_errors"][0])
        first = self.client.get(CREDS).json()["results"][0]["id"]
        self.client.delete(f"{CREDS}{first}/")
        self.assertEqual(self.client.post(CREDS, {}, format="json").status_code, 201)
