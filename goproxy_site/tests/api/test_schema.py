"""The OpenAPI schema: generated without warnings, served with a local Swagger UI, and
honoured by the live API under schemathesis (no 500, no response that breaks it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.core.management import call_command
from django.test import LiveServerTestCase, SimpleTestCase, override_settings

from accounts.models import User
from accounts.services import api_token_issue, credential_issue, user_create
from plans.models import Feature, Plan
from plans.services import plan_assign

EXPECTED_PATHS = {
    "/api/v1/users/",
    "/api/v1/users/{id}/",
    "/api/v1/users/{id}/usage/",
    "/api/v1/me/",
    "/api/v1/me/subscription/",
    "/api/v1/me/subscription/claim-free/",
    "/api/v1/me/usage/",
    "/api/v1/me/credentials/",
    "/api/v1/me/credentials/{id}/",
    "/api/v1/me/credentials/{id}/rotate/",
    "/api/v1/plans/",
    "/api/v1/plans/{id}/",
    "/api/v1/subscriptions/",
    "/api/v1/subscriptions/{id}/",
    "/api/v1/subscriptions/{id}/extend/",
    "/api/v1/subscriptions/{id}/reset-usage/",
    "/api/v1/subscriptions/{id}/disable/",
}
# Bounded fuzzing: about 700 requests, under a minute on the shared 2-core machine.
SCHEMATHESIS_MAX_EXAMPLES = 25
SCHEMATHESIS_SEED = 20261124
SCHEMATHESIS_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)


class ApiSchemaTests(SimpleTestCase):
    def setUp(self) -> None:
        cache.clear()

    def test_generation_has_no_warnings_and_validates(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "schema.yaml"
            # --fail-on-warn raises on any drf-spectacular warning or error.
            call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
            text = out.read_text()
        self.assertIn("openapi: 3", text)
        self.assertIn("tokenAuth", text)

    def test_schema_is_served_with_every_endpoint(self) -> None:
        response = self.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        self.assertEqual(response.status_code, 200)
        schema = response.json()
        self.assertTrue(schema["openapi"].startswith("3."))
        self.assertEqual(EXPECTED_PATHS - set(schema["paths"]), set())
        users = schema["paths"]["/api/v1/users/"]
        self.assertEqual(
            {p["name"] for p in users["get"]["parameters"]},
            {"page", "page_size", "search", "is_active", "plan", "status"},
        )
        self.assertIn("409", users["post"]["responses"])

    def test_swagger_ui_is_served_without_a_cdn(self) -> None:
        response = self.client.get("/api/docs/")
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        self.assertTrue(assets)
        for asset in assets:
            with self.subTest(asset=asset):
                self.assertFalse(asset.startswith(("http:", "https:", "//")), asset)
                self.assertTrue(asset.startswith(settings.STATIC_URL), asset)
                local = finders.find(asset.removeprefix(settings.STATIC_URL))
                self.assertIsNotNone(local, f"{asset} is not a local static file")
        self.assertIn("/api/schema/", html)


@override_settings(
    REST_FRAMEWORK={
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute"},
    }
)
class SchemathesisTests(LiveServerTestCase):
    """Property-based requests from the schema against the live server, as staff."""

    databases = {"default", "plans"}

    def setUp(self) -> None:
        cache.clear()
        # Some data, so generated ids sometimes hit real rows.
        staff = user_create(
            username="op", email="op@example.org", is_staff=True, email_verified=True
        )
        self.token, _ = api_token_issue(user=staff)
        plan = Plan.objects.create(name="Basic", traffic_limit_bytes=10**6, duration_days=30)
        plan.features.add(Feature.objects.create(name="https"))
        Plan.objects.get_or_create(
            name="Free",
            defaults={"is_free": True, "traffic_limit_bytes": 10**5, "duration_days": 1},
        )
        for i in range(3):
            user = user_create(username=f"u{i}", email=f"u{i}@example.org", password="pw-xyz-123")
            plan_assign(user_id=user.pk, plan=plan)
            credential_issue(user=user)
        credential_issue(user=staff, login="op-proxy")

    def operation_count(self) -> int:
        schema = json.loads(self.client.get("/api/schema/", {"format": "json"}).content)
        methods = {"get", "put", "patch", "post", "delete", "head", "options", "trace"}
        return sum(1 for ops in schema["paths"].values() for m in ops if m in methods)

    def test_no_server_error_and_no_schema_violation(self) -> None:
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{self.live_server_url}/api/schema/",
            "--url",
            self.live_server_url,
            "--header",
            f"Authorization: Token {self.token}",
            "--checks",
            SCHEMATHESIS_CHECKS,
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            str(SCHEMATHESIS_MAX_EXAMPLES),
            "--seed",
            str(SCHEMATHESIS_SEED),
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--no-color",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output[-6000:])
        self.assertRegex(output, r"\d+ generated, \d+ passed")
        # Every operation in the schema was exercised, however many the API grows to.
        self.assertIn(f"Tested: {self.operation_count()}", output)
        self.assertEqual(User.objects.get(username="op").is_active, True)
