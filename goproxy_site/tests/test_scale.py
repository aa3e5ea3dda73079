"""Scale-out: two proxy daemons and two Celery workers on one broker give exact totals.

One tansu broker with a 4-partition traffic topic; two `celery worker` processes share
the plan-controller consumer group (two partitions each); two `runproxy` processes each
report their own deltas. Twenty users send traffic through both proxies; every user's
total in the plans DB must equal what the clients moved, a restriction must reach both
proxies, and the admin ports and Celery's ping must tell the truth about it all.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.test import TransactionTestCase
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import credential_issue, user_create
from goproxy_site.events.kafka import topics_ensure
from goproxy_site.tests.support.broker import TansuBroker
from goproxy_site.tests.support.net import free_port, wait_for
from goproxy_site.tests.support.proxy import ProxyProcess
from goproxy_site.tests.support.stack import assert_exact, kafka_proxy
from goproxy_site.tests.support.traffic import StreamOrigin, UserTraffic, fetch
from goproxy_site.tests.support.worker import ROOT, WorkerProcess, stack_env
from plans.models import Plan
from plans.services import plan_assign, subscription_disable_current

PARTITIONS = 4
USERS = 20
ASSIGNED = re.compile(r"assigned (\[.*\])")


@dataclass
class ScaleStack:
    broker: TansuBroker
    origin: StreamOrigin
    workers: list[WorkerProcess]
    proxies: list[ProxyProcess]
    tmp: Path


def last_assignment(worker: WorkerProcess) -> list[tuple[str, int]] | None:
    found = ASSIGNED.findall(worker.log_file.read_text(errors="replace"))
    return ast.literal_eval(found[-1]) if found else None


def spread_over_both(workers: list[WorkerProcess]) -> bool:
    """Each worker holds part of the traffic topic, and together all of it."""
    parts = [last_assignment(w) or [] for w in workers]
    traffic = [{p for t, p in ps if t == settings.KAFKA_TOPIC_TRAFFIC} for ps in parts]
    return all(traffic) and set().union(*traffic) == set(range(PARTITIONS))


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def healthz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def scale_stack(tmp_path: Path) -> Iterator[ScaleStack]:
    broker = TansuBroker(log_path=tmp_path / "tansu.log")
    origin = StreamOrigin()
    workers: list[WorkerProcess] = []
    proxies: list[ProxyProcess] = []
    try:
        broker.start()
        topics = [
            settings.KAFKA_TOPIC_TRAFFIC,
            settings.KAFKA_TOPIC_CONTROL,
            settings.KAFKA_TOPIC_DEAD_LETTER,
        ]
        topics_ensure(topics, bootstrap=broker.bootstrap, partitions=PARTITIONS)
        for i in range(2):
            env = {
                **stack_env(broker.bootstrap, tmp_path),
                "WORKER_METRICS_PORT": str(free_port()),  # one port per worker on this host
            }
            worker = WorkerProcess(env, tmp_path / f"worker-{i}.log")
            workers.append(worker)
            worker.start()
        for i in range(2):
            (tmp_path / f"proxy-{i}").mkdir()
            proxy = kafka_proxy(
                tmp_path / f"proxy-{i}", broker.bootstrap, PROXY_ADMIN_PORT=str(free_port())
            )
            proxies.append(proxy)
            proxy.start()
        yield ScaleStack(broker, origin, workers, proxies, tmp_path)
        for proxy in proxies:
            assert proxy.stop() == 0, proxy.log()
    finally:
        for proxy in proxies:
            proxy.stop()
        for worker in workers:
            worker.stop(timeout=3.0)
        broker.stop()
        origin.shutdown()


class ScaleOutTests(TransactionTestCase):
    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _stack(self, scale_stack: ScaleStack) -> None:
        self.stack = scale_stack

    def admin_port(self, proxy: ProxyProcess) -> int:
        return int(proxy.env["PROXY_ADMIN_PORT"])

    def test_two_proxies_two_workers_exact_totals_and_restrictions_reach_both(self) -> None:
        stack = self.stack
        admin = AdminClient({"bootstrap.servers": stack.broker.bootstrap})
        topic = admin.list_topics(timeout=10).topics[settings.KAFKA_TOPIC_TRAFFIC]
        assert len(topic.partitions) == PARTITIONS
        assert wait_for(lambda: spread_over_both(stack.workers), timeout=30.0), [
            w.log() for w in stack.workers
        ]

        plan = Plan.objects.create(name="scale-unlimited", duration_days=30)
        users: list[UserTraffic] = []
        for i in range(USERS):
            user = user_create(username=f"scale-{i}", email=f"scale-{i}@example.org")
            issued = credential_issue(user=user, login=f"scale-{i}")
            plan_assign(user_id=user.pk, plan=plan)
            users.append(UserTraffic(issued.credential.login, issued.secret, user_id=user.pk))

        # Every user alternates between the two proxies; sizes differ per user and request.
        jobs = [
            (stack.proxies[(u + r) % 2].port, users[u], f"/stream?n={1000 + 997 * u + 31 * r}")
            for u in range(USERS)
            for r in range(4)
        ]
        ports = [self.admin_port(p) for p in stack.proxies]
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [
                pool.submit(fetch, port, user, stack.origin.port, path) for port, user, path in jobs
            ]
            during = [scrape(p) for p in ports]  # scraped while the traffic flows
            statuses = [f.result(timeout=60).status for f in futures]
        assert statuses == [200] * len(jobs)
        for samples in during:
            assert ("goproxy_proxy_connections_open", ()) in samples

        # Exact per-user totals in the plans DB, whichever proxy and worker carried them.
        for traffic in users:
            assert_exact(traffic)

        # Both proxies served, and their byte counters add up to what the clients moved.
        sent = sum(u.sent for u in users)
        received = sum(u.received for u in users)
        after = [scrape(p) for p in ports]
        for samples in after:
            assert samples[("goproxy_proxy_requests_total", (("status", "200"),))] > 0
        assert sum(s[("goproxy_proxy_bytes_total", (("direction", "in"),))] for s in after) == sent
        assert (
            sum(s[("goproxy_proxy_bytes_total", (("direction", "out"),))] for s in after)
            == received
        )

        # Both workers applied part of the traffic (consumer group, 2 partitions each).
        for worker in stack.workers:
            samples = scrape(int(worker.env["WORKER_METRICS_PORT"]))
            key = ("goproxy_worker_events_applied_total", (("event", "UserConsumedTrafficEvent"),))
            assert samples.get(key, 0) > 0, worker.log()
            assert ("goproxy_worker_batch_duration_seconds_count", ()) in samples

        # One restriction, written once in the plans DB, reaches both proxies.
        victim = users[0]
        subscription_disable_current(user_id=victim.user_id)

        def refused_by(proxy: ProxyProcess) -> bool:
            return fetch(proxy.port, victim, stack.origin.port, "/stream?n=10").status == 403

        for proxy in stack.proxies:
            assert wait_for(partial(refused_by, proxy), timeout=10.0), proxy.log()
        other = users[1]
        for proxy in stack.proxies:
            assert fetch(proxy.port, other, stack.origin.port, "/stream?n=10").status == 200
        for port in ports:
            health = healthz(port)
            assert health["status"] == "ok", health
            assert health["checks"]["producer"]["connected"] is True
            assert health["checks"]["restrictions"]["loaded"] is True
            assert health["checks"]["restrictions"]["restricted_users"] >= 1

        # Worker health as compose checks it: Celery's ping, addressed to each worker.
        for worker in stack.workers:
            match = re.search(r"(pipeline-[0-9a-f]{8}@\S+)", worker.log())
            assert match, worker.log()
            ping = subprocess.run(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "goproxy_site",
                    "inspect",
                    "ping",
                    "-d",
                    match.group(1),
                    "--timeout",
                    "5",
                ],
                cwd=ROOT,
                env=worker.env,
                capture_output=True,
                timeout=60,
            )
            assert ping.returncode == 0 and b"pong" in ping.stdout, ping.stdout + ping.stderr
        print(f"scale: {USERS} users, {len(jobs)} requests, {sent + received} bytes exact")
