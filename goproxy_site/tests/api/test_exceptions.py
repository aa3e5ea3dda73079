"""API errors: unknown paths and methods answer JSON."""

from __future__ import annotations

from goproxy_site.tests.base import ApiTestCase


class NotFoundTests(ApiTestCase):
    def test_unknown_api_paths_are_json_404(self) -> None:
        for path in ("/api/v1/nope/", "/api/v1/users", "/api/v1/me/subscription/x/"):
            with self.subTest(path=path):
                response = self.client.post(path, {}, format="json")
                self.assertEqual(response.status_code, 404)
                self.assertEqual(response["Content-Type"], "application/json")
                self.assertIn("Not found", response.json()["detail"])
        self.assertIn("try /api/v1/users/", self.client.get("/api/v1/users").json()["detail"])

    def test_wrong_method_is_json_405(self) -> None:
        self.login(self.alice)
        response = self.client.delete("/api/v1/me/")
        self.assertEqual(response.status_code, 405)
        self.assertIn("detail", response.json())
