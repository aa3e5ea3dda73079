"""docker-compose.yml read as an operator would (PyYAML; `docker compose config` needs the
compose plugin, which CI runs only where it is installed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.test import SimpleTestCase

ROOT = Path(settings.BASE_DIR)
ONE_SHOT = {"migrate", "kafka-init"}
LONG_RUNNING = {
    "accounts-db",
    "plans-db",
    "kafka",
    "rabbitmq",
    "redis",
    "web",
    "proxy",
    "worker",
    "beat",
}
CONDITIONS = {"service_healthy", "service_completed_successfully", "service_started"}
# ${VAR}, ${VAR:-default}, ${VAR:?message}; `$$` escapes are for the container's shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)")


class ComposeTests(SimpleTestCase):
    text: str
    compose: dict[str, Any]  # YAML as loaded: nested dicts, lists and strings
    services: dict[str, Any]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.text = (ROOT / "docker-compose.yml").read_text()
        cls.compose = yaml.safe_load(cls.text)
        cls.services = cls.compose["services"]

    def test_the_whole_stack_is_described(self) -> None:
        self.assertEqual(set(self.services), ONE_SHOT | LONG_RUNNING)
        self.assertTrue(self.services["kafka"]["image"].startswith("apache/kafka:"))
        kafka_env = self.services["kafka"]["environment"]
        self.assertEqual(kafka_env["KAFKA_PROCESS_ROLES"], "broker,controller")  # KRaft
        self.assertIn("--partitions ${KAFKA_PARTITIONS", self.services["kafka-init"]["command"][0])
        self.assertIn("gunicorn", self.services["web"]["command"])
        self.assertIn("runproxy", self.services["proxy"]["command"])
        self.assertIn("celery -A goproxy_site worker", self.services["worker"]["command"])
        self.assertIn("celery -A goproxy_site beat", self.services["beat"]["command"])

    def test_two_databases_are_separately_configurable(self) -> None:
        env = self.services["web"]["environment"]
        self.assertIn("@accounts-db:", env["ACCOUNTS_DATABASE_URL"])
        self.assertIn("@plans-db:", env["PLANS_DATABASE_URL"])
        for db, prefix in (("accounts-db", "ACCOUNTS"), ("plans-db", "PLANS")):
            password = self.services[db]["environment"]["POSTGRES_PASSWORD"]
            self.assertTrue(password.startswith(f"${{{prefix}_DB_PASSWORD:?"), password)
        migrate = self.services["migrate"]["command"]
        self.assertIn("migrate --noinput", migrate)
        self.assertIn("--database=plans", migrate)

    def test_every_long_running_service_has_a_healthcheck(self) -> None:
        for name in LONG_RUNNING:
            with self.subTest(service=name):
                check = self.services[name].get("healthcheck")
                self.assertIsNotNone(check)
                self.assertIn(check["test"][0], ("CMD", "CMD-SHELL"))
                self.assertIn("interval", check)
        self.assertIn("inspect ping", self.services["worker"]["healthcheck"]["test"][1])
        self.assertIn(":9100/healthz", self.services["proxy"]["healthcheck"]["test"][3])
        self.assertIn("/healthz", self.services["web"]["healthcheck"]["test"][3])

    def test_depends_on_always_names_a_condition_the_target_can_meet(self) -> None:
        for name, service in self.services.items():
            for target, rule in (service.get("depends_on") or {}).items():
                with self.subTest(service=name, target=target):
                    self.assertIn(rule["condition"], CONDITIONS)
                    if rule["condition"] == "service_healthy":
                        self.assertIn("healthcheck", self.services[target])
                    if rule["condition"] == "service_completed_successfully":
                        self.assertIn(target, ONE_SHOT)
        for name in ("web", "proxy", "worker", "beat"):
            deps = self.services[name]["depends_on"]
            self.assertEqual(deps["migrate"]["condition"], "service_completed_successfully")
            self.assertEqual(deps["kafka-init"]["condition"], "service_completed_successfully")
            self.assertEqual(deps["rabbitmq"]["condition"], "service_healthy")
        for one_shot in ONE_SHOT:
            self.assertEqual(self.services[one_shot]["restart"], "no")

    def test_proxies_and_workers_scale(self) -> None:
        for name in ("proxy", "worker"):
            with self.subTest(service=name):
                service = self.services[name]
                self.assertNotIn("container_name", service)
                for port in service.get("ports", []):
                    # A fixed host port would make the second replica fail to bind.
                    self.assertTrue(str(port).startswith("${"), port)
        env = self.services["proxy"]["environment"]
        self.assertEqual(env["PROXY_ADMIN_PORT"], 9100)
        self.assertEqual(env["KAFKA_BOOTSTRAP_SERVERS"], "kafka:9092")  # merged, not replaced
        self.assertNotIn("9100", str(self.services["proxy"]["ports"]))  # never published
        worker_env = self.services["worker"]["environment"]
        self.assertEqual(worker_env["WORKER_METRICS_PORT"], 9101)
        self.assertIn("ACCOUNTS_DATABASE_URL", worker_env)

    def test_app_services_run_production_settings_with_secrets_from_env_file(self) -> None:
        for name in ("migrate", "web", "proxy", "worker", "beat"):
            with self.subTest(service=name):
                service = self.services[name]
                self.assertEqual(service["env_file"], ".env")
                env = service["environment"]
                self.assertEqual(env["DJANGO_SETTINGS_MODULE"], "goproxy_site.settings.prod")
                self.assertNotIn("DJANGO_SECRET_KEY", env)  # from .env, never in the file

    def test_every_variable_is_documented_in_env_example(self) -> None:
        used = set(VARIABLE.findall(self.text))
        self.assertIn("KAFKA_PARTITIONS", used)  # the pattern really finds variables
        lines = (ROOT / ".env.example").read_text().splitlines()
        documented = {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z_]+=", line)}
        self.assertEqual(used - documented, set())
