"""API authentication: session (with CSRF) and token."""

from __future__ import annotations

from rest_framework.test import APIClient

from goproxy_site.tests.base import ApiTestCase


class SessionAuthTests(ApiTestCase):
    def test_session_login_works_and_csrf_is_enforced(self) -> None:
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(self.charlie)
        self.assertEqual(client.get("/api/v1/me/").json()["username"], "charlie")
        response = client.post("/api/v1/me/credentials/", {}, format="json")
        self.assertEqual(response.status_code, 403)
        self.assertIn("CSRF", response.json()["detail"])
        # With the CSRF cookie and header the same request goes through.
        client.get("/dashboard/")  # any portal page with a form sets the cookie
        token = client.cookies["csrftoken"].value
        response = client.post("/api/v1/me/credentials/", {}, format="json", HTTP_X_CSRFTOKEN=token)
        self.assertEqual(response.status_code, 201, response.content)

    def test_token_auth_needs_no_csrf(self) -> None:
        client = APIClient(enforce_csrf_checks=True)
        client.credentials(HTTP_AUTHORIZATION=f"Token {self.tokens[self.charlie.pk]}")
        self.assertEqual(client.post("/api/v1/me/credentials/", {}, format="json").status_code, 201)
