"""The whole stack for end-to-end tests: tansu, a Celery worker, the proxy daemon and an
origin, started per test (the `stack` fixture), and the exactness check against the
plans DB.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from accounts.services import credential_issue, user_create
from goproxy_site.tests.support.broker import TansuBroker
from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import ProxyProcess
from goproxy_site.tests.support.traffic import WAIT, Response, StreamOrigin, UserTraffic, fetch
from goproxy_site.tests.support.worker import WorkerProcess, stack_env
from plans.models import Plan, Subscription, UnplannedUsage
from plans.services import plan_assign


def kafka_proxy(tmp: Path, bootstrap: str, **extra: str) -> ProxyProcess:
    return ProxyProcess(
        tmp,
        {
            **stack_env(bootstrap, tmp),
            "PROXY_REPORTER": "proxy_daemon.reporters.kafka.KafkaReporter",
            "PROXY_CONTROL_PLUGINS": "proxy_daemon.control_plugin.KafkaControlPlugin",
            "PROXY_METER_INTERVAL": "1.0",
            **extra,
        },
        "goproxy_site.settings.test",
    )


@dataclass
class Stack:
    broker: TansuBroker
    worker: WorkerProcess
    proxy: ProxyProcess
    origin: StreamOrigin
    tmp: Path

    def user(self, name: str, *, plan: Plan | None, limit: int | None = None) -> UserTraffic:
        user = user_create(username=name, email=f"{name}@example.org")
        issued = credential_issue(user=user, login=name)
        if plan is not None:
            plan_assign(user_id=user.pk, plan=plan)
        return UserTraffic(name, issued.secret, limit=limit, user_id=user.pk)

    def get(self, user: UserTraffic, path: str = "/stream?n=100") -> Response:
        return fetch(self.proxy.port, user, self.origin.port, path)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    broker = TansuBroker(log_path=tmp_path / "tansu.log")
    origin = StreamOrigin()
    worker = WorkerProcess(stack_env(broker.bootstrap, tmp_path), tmp_path / "worker.log")
    proxy = kafka_proxy(tmp_path, broker.bootstrap)
    stack = Stack(broker, worker, proxy, origin, tmp_path)
    try:
        broker.start()
        worker.start()
        proxy.start()
        yield stack
        rc = stack.proxy.stop()  # None: the test stopped it (and checked the exit code)
        assert rc in (0, None), stack.proxy.log()
    finally:
        stack.proxy.stop()
        stack.worker.stop(timeout=3.0)  # a LeaveGroup during a rebalance can take long
        stack.broker.stop()
        origin.shutdown()


def recorded(user: UserTraffic) -> tuple[int, int]:
    sub = Subscription.objects.filter(user_id=user.user_id, is_current=True).first()
    if sub is None:
        row = UnplannedUsage.objects.filter(user_id=user.user_id).first()
        return (row.bytes_up, row.bytes_down) if row else (0, 0)
    return (sub.bytes_up, sub.bytes_down)


def assert_exact(user: UserTraffic) -> None:
    """The plans DB ends with exactly the client's byte counts."""
    final = wait_for(lambda: recorded(user) == user.total, timeout=30.0)
    assert final, f"plans DB has {recorded(user)}, client moved {user.total}"


class TrafficLoad:
    """Background clients fetching through the proxy until stopped; counts every byte."""

    def __init__(self, stack: Stack, users: list[UserTraffic], path: str) -> None:
        self.stack = stack
        self.users = users
        self.path = path
        self.statuses: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(u,)) for u in users]

    def _run(self, user: UserTraffic) -> None:
        for _ in range(100_000):
            if self._stop.is_set():
                return
            try:
                self.statuses.append(self.stack.get(user, self.path).status)
            except OSError as exc:  # the proxy going away mid-request is part of some tests
                self.errors.append(exc)
                time.sleep(0.1)

    def __enter__(self) -> TrafficLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(WAIT)
