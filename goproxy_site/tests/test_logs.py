from __future__ import annotations

import json
import logging

from django.test import SimpleTestCase, TestCase

from goproxy_site.logs import ContextFilter, JsonFormatter, redact, request_id_var


class RedactTests(SimpleTestCase):
    def test_secrets_never_survive(self) -> None:
        cases = [
            "Proxy-Authorization: Basic ZGVtbzpzM2NyM3Qtc2VjcmV0",
            "curl -x http://demo-proxy:Zx9_secret-value@127.0.0.1:8888 http://x",
            'payload {"secret": "abcdef123456", "login": "demo"}',
            "password=hunter2hunter2",
            "Authorization: Token 0123456789abcdef",
        ]
        for line in cases:
            with self.subTest(line=line):
                cleaned = redact(line)
                self.assertIn("[redacted]", cleaned)
                for secret in (
                    "ZGVtbzpzM2NyM3Qtc2VjcmV0",
                    "Zx9_secret-value",
                    "abcdef123456",
                    "hunter2hunter2",
                    "0123456789abcdef",
                ):
                    self.assertNotIn(secret, cleaned)

    def test_ordinary_text_is_untouched(self) -> None:
        line = "user 42 consumed 1000 bytes via GET http://example.com/path"
        self.assertEqual(redact(line), line)


class JsonFormatTests(SimpleTestCase):
    def test_one_json_object_per_line_with_request_id(self) -> None:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("w",), None)
        token = request_id_var.set("req-1")
        try:
            ContextFilter().filter(record)
        finally:
            request_id_var.reset(token)
        line = JsonFormatter().format(record)
        self.assertNotIn("\n", line)
        entry = json.loads(line)
        self.assertEqual(entry["message"], "hello w")
        self.assertEqual(entry["request_id"], "req-1")
        self.assertEqual(entry["level"], "INFO")


class RequestIdTests(TestCase):
    databases = {"default", "plans"}

    def test_it_is_echoed_or_generated(self) -> None:
        given = self.client.get("/admin/login/", headers={"X-Request-ID": "lb-123"})
        self.assertEqual(given["X-Request-ID"], "lb-123")
        fresh = self.client.get("/admin/login/", headers={"X-Request-ID": "bad id\n"})
        self.assertRegex(fresh["X-Request-ID"], r"^[0-9a-f]{32}$")
