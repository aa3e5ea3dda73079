from __future__ import annotations

import socket

from django.test import TestCase, override_settings


class HealthzTests(TestCase):
    databases = {"default", "plans"}

    def setUp(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def tearDown(self) -> None:
        self.listener.close()

    def test_it_is_ok_when_databases_and_brokers_answer(self) -> None:
        with override_settings(
            KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{self.port}",
            CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{self.port}//",
        ):
            response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "ok")
        self.assertEqual(set(response.json()["checks"].values()), {"ok"})

    def test_it_is_503_and_names_the_broker_that_is_down(self) -> None:
        self.listener.close()
        with override_settings(
            KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{self.port}",
            CELERY_BROKER_URL="filesystem://",
        ):
            response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 503)
        body = response.json()
        self.assertEqual(body["status"], "unhealthy")
        self.assertIn(f"127.0.0.1:{self.port}", body["checks"]["kafka"])
        self.assertEqual(body["checks"]["db:default"], "ok")
        self.assertEqual(body["checks"]["db:plans"], "ok")


class MetricsEndpointTests(TestCase):
    def test_web_metrics_are_in_prometheus_format(self) -> None:
        self.client.get("/healthz")
        response = self.client.get("/metrics")
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"django_http_requests_total_by_method_total", response.content)
