from __future__ import annotations

import socket
from datetime import timedelta

from django.test import TestCase, override_settings
from django.utils import timezone

from accounts.services import user_create
from plans import services
from plans.models import ControllerHeartbeat


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
        checks = response.json()["checks"]
        self.assertEqual({v for v in checks.values() if isinstance(v, str)}, {"ok"})
        self.assertEqual(checks["plan_controller_lag_seconds"], 0)

    def _answering(self) -> override_settings:
        return override_settings(
            KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{self.port}",
            CELERY_BROKER_URL="filesystem://",
            PLANS_MAX_LAG_SECONDS=30,
        )

    def test_a_worker_behind_more_than_the_bound_makes_it_degraded(self) -> None:
        services.controller_heartbeat_record(
            worker="w1", lag_events=120_000, lag_seconds=61.5, events_per_second=2000
        )
        services.controller_heartbeat_record(
            worker="w2", lag_events=10, lag_seconds=0.4, events_per_second=2000
        )
        with self._answering():
            body = self.client.get("/healthz").json()
        self.assertEqual(body["status"], "degraded")
        self.assertIn(
            "62 s behind (more than 30 s): 120010 events waiting", body["checks"]["plan_controller"]
        )
        self.assertEqual(body["checks"]["plan_controller_lag_seconds"], 61.5)

    def test_a_worker_within_the_bound_is_ok(self) -> None:
        services.controller_heartbeat_record(
            worker="w1", lag_events=800, lag_seconds=1.2, events_per_second=2000
        )
        with self._answering():
            response = self.client.get("/healthz")
        self.assertEqual((response.status_code, response.json()["status"]), (200, "ok"))
        self.assertEqual(response.json()["checks"]["plan_controller_lag_events"], 800)

    def test_workers_that_went_silent_make_it_degraded(self) -> None:
        services.controller_heartbeat_record(
            worker="w1", lag_events=0, lag_seconds=0, events_per_second=0
        )
        ControllerHeartbeat.objects.update(updated_at=timezone.now() - timedelta(minutes=5))
        with self._answering():
            body = self.client.get("/healthz").json()
        self.assertEqual(body["status"], "degraded")
        self.assertIn("no plan-controller worker reported", body["checks"]["plan_controller"])

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
    """The web's /metrics answers staff and the configured scraper token only."""

    databases = {"default"}

    def test_staff_read_prometheus_metrics(self) -> None:
        staff = user_create(username="olga", email="olga@example.org", is_staff=True)
        self.client.force_login(staff)
        self.client.get("/healthz")
        response = self.client.get("/metrics")
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"django_http_requests_total_by_method_total", response.content)

    def test_anyone_else_is_refused_with_a_reason(self) -> None:
        anonymous = self.client.get("/metrics")
        self.assertEqual(anonymous.status_code, 401)
        self.assertEqual(anonymous["WWW-Authenticate"], 'Bearer realm="metrics"')
        self.assertIn(b"log in as staff", anonymous.content)
        self.assertNotIn(b"django_http", anonymous.content)
        user = user_create(username="ursula", email="ursula@example.org")
        self.client.force_login(user)
        self.assertEqual(self.client.get("/metrics").status_code, 403)

    @override_settings(WEB_METRICS_TOKEN="scrape-me-0123456789")
    def test_prometheus_scrapes_with_the_bearer_token(self) -> None:
        ok = self.client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        self.assertEqual(ok.status_code, 200)
        self.assertIn(b"# TYPE", ok.content)
        wrong = self.client.get("/metrics", headers={"Authorization": "Bearer guess"})
        self.assertEqual(wrong.status_code, 403)

    def test_no_token_configured_means_no_token_works(self) -> None:
        response = self.client.get("/metrics", headers={"Authorization": "Bearer "})
        self.assertEqual(response.status_code, 401)
        response = self.client.get("/metrics", headers={"Authorization": "Bearer anything"})
        self.assertEqual(response.status_code, 403)
