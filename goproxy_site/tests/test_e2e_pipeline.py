"""End-to-end: the real proxy daemon, tansu, a Celery worker with the plan-controller
bootstep, and both databases.

Every byte the client moved through the proxy (request and response wire bytes) must
end up in the plans DB exactly once; restrictions must cut and lift within 2 s.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import TransactionTestCase

from accounts.services import credential_issue, user_create
from goproxy_site.tests.fixtures import TansuBroker
from plans.models import Plan, Subscription, SubscriptionStatus, UnplannedUsage
from plans.services import plan_assign
from proxy_daemon.tests.support import ProxyProcess, basic, db_url

ROOT = Path(settings.BASE_DIR)
T = TypeVar("T")
WAIT = 20.0  # upper bound for anything that should take a few seconds


# -- origin and client -------------------------------------------------------------------
class StreamHandler(BaseHTTPRequestHandler):
    """/stream?n=BYTES&rate=BYTES_PER_S paces a body so cuts are seen when they happen."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: int(v[0]) for k, v in parse_qs(url.query).items()}
        n = q.get("n", 100)
        rate = q.get("rate", 0)
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        chunk = 32 * 1024
        sent = 0
        start = time.monotonic()
        try:
            while sent < n:
                k = min(chunk, n - sent)
                self.wfile.write(b"x" * k)
                sent += k
                if rate:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            return


class StreamOrigin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StreamHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


@dataclass
class UserTraffic:
    """Client-side wire bytes of one proxy user, and when they crossed a limit."""

    login: str
    secret: str
    limit: int | None = None
    sent: int = 0
    received: int = 0
    crossed_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sent: int = 0, received: int = 0) -> None:
        with self.lock:
            self.sent += sent
            self.received += received
            if self.limit and self.crossed_at is None and self.sent + self.received >= self.limit:
                self.crossed_at = time.monotonic()

    @property
    def total(self) -> tuple[int, int]:
        return (self.sent, self.received)


@dataclass
class Response:
    status: int
    body: bytes
    ended_at: float
    complete: bool


def fetch(proxy_port: int, user: UserTraffic, origin_port: int, path: str) -> Response:
    """One GET through the proxy on a raw socket; every byte is added to `user`."""
    head = (
        f"GET http://127.0.0.1:{origin_port}{path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{origin_port}\r\n"
        f"Proxy-Authorization: {basic(user.login, user.secret)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    data = bytearray()
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=WAIT) as sock:
        sock.sendall(head)
        sent = len(head)
        counted = False
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and not counted:
                    status = int(data.split(b" ", 2)[1])
                    counted = status != 403
                    if counted:
                        user.add(sent=sent)
                if counted:
                    user.add(received=len(chunk))
        except ConnectionResetError:
            pass
    ended = time.monotonic()
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        # Closed before any response: only an admitted request is cut that way (a
        # restriction that arrives mid-request), and the proxy took its head for the user.
        user.add(sent=sent)
    status = int(data.split(b" ", 2)[1]) if head_end > 0 else 0
    body = bytes(data[head_end + 4 :]) if head_end > 0 else b""
    length = 0
    for line in data[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return Response(status, body, ended, complete=len(body) == length)


def wait_for(predicate: Callable[[], T], timeout: float = WAIT, interval: float = 0.05) -> T | None:
    """Poll `predicate` until it returns a truthy value (bounded by `timeout`)."""
    value = None
    for _ in range(int(timeout / interval)):
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return value


# -- processes ---------------------------------------------------------------------------
def stack_env(bootstrap: str, tmp: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "goproxy_site.settings.test",
        "ACCOUNTS_DATABASE_URL": db_url("default"),
        "PLANS_DATABASE_URL": db_url("plans"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_REPORTER_SPOOL_DIR": str(tmp / "spool"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",
    }


class WorkerProcess:
    """`celery -A goproxy_site worker` with the plan-controller bootstep."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_assigned: bool = True) -> WorkerProcess:
        queue = f"goproxy{os.environ.get('GOPROXY_TEST_DB_SUFFIX', '')}"
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "goproxy_site",
                    "worker",
                    "-P",
                    "solo",
                    "-Q",
                    queue,
                    "-l",
                    "info",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-n",
                    f"pipeline-{uuid.uuid4().hex[:8]}@%h",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        marker = b"assigned [" if wait_assigned else b"plan-controller started"
        ok = wait_for(lambda: marker in self.log_file.read_bytes()[offset:] or self.exited())
        assert ok and not self.exited(), self.log()
        return self

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


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
        traffic = UserTraffic(name, issued.secret, limit=limit)
        traffic.user_id = user.pk  # type: ignore[attr-defined]
        return traffic

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
    sub = Subscription.objects.filter(user_id=user.user_id, is_current=True).first()  # type: ignore[attr-defined]
    if sub is None:
        row = UnplannedUsage.objects.filter(user_id=user.user_id).first()  # type: ignore[attr-defined]
        return (row.bytes_up, row.bytes_down) if row else (0, 0)
    return (sub.bytes_up, sub.bytes_down)


def assert_exact(user: UserTraffic) -> None:
    """The plans DB ends with exactly the client's byte counts."""
    final = wait_for(lambda: recorded(user) == user.total, timeout=30.0)
    assert final, f"plans DB has {recorded(user)}, client moved {user.total}"


class PipelineEndToEndTests(TransactionTestCase):
    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _stack(self, stack: Stack) -> None:
        self.stack = stack

    def test_limit_cut_no_plan_refusal_and_reassignment(self) -> None:
        stack = self.stack
        limit = 2_000_000
        plan = Plan.objects.create(name="e2e-small", traffic_limit_bytes=limit, duration_days=30)
        alice = stack.user("e2e-alice", plan=plan, limit=limit)
        charlie = stack.user("e2e-charlie", plan=None)

        # alice streams at ~1 MB/s until the proxy cuts her.
        cut = stack.get(alice, "/stream?n=50000000&rate=1000000")
        assert cut.status == 200 and not cut.complete
        assert alice.crossed_at is not None
        latency = cut.ended_at - alice.crossed_at
        assert latency <= 2.0, f"cut {latency:.2f}s after crossing the limit"
        assert_exact(alice)
        sub = Subscription.objects.get(user_id=alice.user_id, is_current=True)  # type: ignore[attr-defined]
        assert sub.status == SubscriptionStatus.LIMITED

        refused = stack.get(alice)
        assert refused.status == 403 and b"traffic limit reached" in refused.body

        # charlie has no plan: served until the first report, then refused.
        first = stack.get(charlie)
        assert first.status == 200
        last = wait_for(lambda: (r := stack.get(charlie)).status == 403 and r, timeout=5.0)
        assert last and b"no active plan" in last.body
        assert_exact(charlie)

        # A new plan lets alice back in within 2 s.
        plan_assign(user_id=alice.user_id, plan=plan)  # type: ignore[attr-defined]
        assigned_at = time.monotonic()
        back = wait_for(lambda: stack.get(alice).status == 200, timeout=5.0)
        assert back and time.monotonic() - assigned_at <= 2.0
        print(f"enforcement latency {latency:.3f}s")


# -- fault tests -------------------------------------------------------------------------
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


class PortForwarder:
    """A TCP relay to PostgreSQL that can be taken down (an outage of the plans DB)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.down = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def outage(self) -> None:
        self.down.set()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sockets = []

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.listener.close()
        self.outage()


@pytest.mark.slow
class PipelineFaultTests(TransactionTestCase):
    """Each fault ends with the plans DB holding exactly the bytes the clients moved."""

    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _stack(self, stack: Stack) -> None:
        self.stack = stack
        self.plan = Plan.objects.create(name="e2e-unlimited", duration_days=30)

    def users(self, count: int) -> list[UserTraffic]:
        return [self.stack.user(f"fault-{i}", plan=self.plan) for i in range(count)]

    def assert_all_exact(self, users: list[UserTraffic]) -> None:
        for user in users:
            assert_exact(user)
            assert user.sent > 0 and user.received > 0

    def test_worker_killed_mid_batch_counts_nothing_twice(self) -> None:
        users = self.users(3)
        with TrafficLoad(self.stack, users, "/stream?n=20000"):
            time.sleep(2.5)
            self.stack.worker.kill()  # SIGKILL: no offset commit, maybe mid-transaction
            time.sleep(1.0)
            self.stack.worker.start()
            time.sleep(1.5)
        self.assert_all_exact(users)

    def test_broker_frozen_for_30s_loses_nothing(self) -> None:
        users = self.users(2)
        with TrafficLoad(self.stack, users, "/stream?n=50000") as load:
            time.sleep(1.5)
            self.stack.broker.freeze()
            try:
                time.sleep(30)
            finally:
                self.stack.broker.thaw()
            time.sleep(1.5)
        assert set(load.statuses) == {200}, "the proxy kept serving while Kafka was frozen"
        self.assert_all_exact(users)

    def test_proxy_sigterm_mid_transfer(self) -> None:
        [user] = self.users(1)
        self.stack.proxy.stop()
        self.stack.proxy = kafka_proxy(
            self.stack.tmp, self.stack.broker.bootstrap, PROXY_DRAIN_TIMEOUT="1"
        ).start()
        result: list[Response] = []
        t = threading.Thread(
            target=lambda: result.append(self.stack.get(user, "/stream?n=50000000&rate=2000000"))
        )
        t.start()
        time.sleep(1.5)
        rc = self.stack.proxy.stop()
        t.join(WAIT)
        assert rc == 0
        assert result and not result[0].complete and user.received > 1_000_000
        self.assert_all_exact([user])

    def test_broker_unreachable_at_proxy_start_and_spool_across_restart(self) -> None:
        users = self.users(2)
        stack = self.stack
        stack.proxy.stop()
        stack.worker.stop()
        stack.broker.stop()
        # Broker gone: the proxy starts, serves, and keeps every delta.
        stack.proxy = kafka_proxy(stack.tmp, stack.broker.bootstrap).start()
        with TrafficLoad(stack, users[:1], "/stream?n=30000") as load:
            time.sleep(2.0)
        assert load.statuses and set(load.statuses) == {200}
        # Stopped while the broker is still away: the deltas go to the spool file.
        assert stack.proxy.stop() == 0
        spooled = list((stack.tmp / "spool").glob("traffic-*.jsonl"))
        assert len(spooled) == 1 and spooled[0].read_bytes().count(b"\n") >= 1
        # A new proxy starts without the broker, serves, then the broker comes back.
        stack.proxy = kafka_proxy(stack.tmp, stack.broker.bootstrap).start()
        with TrafficLoad(stack, users[1:], "/stream?n=30000"):
            time.sleep(1.5)
            stack.broker.start()
            stack.worker.start()
            time.sleep(1.5)
        self.assert_all_exact(users)
        assert wait_for(lambda: not list((stack.tmp / "spool").iterdir()), timeout=10.0)

    def test_plans_db_outage_is_retried_and_nothing_skipped(self) -> None:
        from django.db import connections

        users = self.users(2)
        stack = self.stack
        plans = connections["plans"].settings_dict
        if connections["plans"].vendor == "postgresql":
            forwarder = PortForwarder((plans["HOST"] or "127.0.0.1", int(plans["PORT"] or 5432)))
            stack.worker.stop()
            stack.worker.env["PLANS_DATABASE_URL"] = db_url("plans").replace(
                f":{plans['PORT'] or 5432}/", f":{forwarder.port}/"
            )
            stack.worker.start()
            outage, restore = forwarder.outage, forwarder.restore
        else:
            # SQLite: an exclusive lock held past the worker's 20 s busy timeout.
            import sqlite3

            holder = sqlite3.connect(plans["NAME"], timeout=30, check_same_thread=False)
            forwarder = None

            def outage() -> None:
                holder.execute("BEGIN EXCLUSIVE")

            def restore() -> None:
                holder.rollback()

        try:
            with TrafficLoad(stack, users, "/stream?n=20000"):
                time.sleep(1.5)
                outage()
                time.sleep(4.0 if forwarder else 22.0)
                restore()
                time.sleep(1.5)
            assert b"plans DB write failed" in stack.worker.log_file.read_bytes()
            self.assert_all_exact(users)
        finally:
            stack.worker.stop(timeout=3.0)
            if forwarder:
                forwarder.close()
