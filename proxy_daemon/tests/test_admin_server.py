"""The admin port: the /healthz report, and /healthz and Prometheus /metrics on the real
runproxy."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from goproxy_site.tests.support.net import free_port
from goproxy_site.tests.support.proxy import E2E, EchoServer, ProxyProcess, RawClient, basic
from proxy_daemon.admin_server import health, spool_usage
from proxy_daemon.hooks import DeliveryState, TrafficDelta
from proxy_daemon.reporters.local import MemoryReporter

from .control_plugin import control_call

pytestmark = E2E

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(port: int) -> Samples:
    status, body = get(port, "/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class SpoolUsageTests:
    def test_spool_usage_counts_spooled_and_claimed_files(self, tmp_path: Path) -> None:
        (tmp_path / "traffic-a.jsonl").write_bytes(b"x" * 10)
        (tmp_path / "claimed-b-traffic-c.jsonl").write_bytes(b"y" * 5)
        (tmp_path / "other.tmp").write_bytes(b"z" * 99)
        assert spool_usage(tmp_path) == (2, 15)
        assert spool_usage(tmp_path / "missing") == (0, 0)


class BrokerReporter:
    """A Reporter that sends to a broker (what /healthz reads of KafkaReporter)."""

    def __init__(self, spool_dir: Path) -> None:
        self.connected = True
        self.spool_dir = spool_dir

    def start(self) -> None: ...

    def report(self, deltas: list[TrafficDelta]) -> None: ...

    def close(self, timeout: float) -> None: ...

    def delivery(self) -> DeliveryState:
        return DeliveryState(
            connected=self.connected, delivered=3, queue={"pending": 0}, spool_dir=self.spool_dir
        )


class Plugin:
    """A ControlPlugin in a given state."""

    def __init__(self, *, loaded: bool = True, streaming: bool = True) -> None:
        self.loaded = loaded
        self.streaming = streaming
        self.applied = 0

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ProxyHealthTests:
    def test_ok_degraded_and_unavailable(self, tmp_path: Path) -> None:
        kafka = BrokerReporter(tmp_path)

        def check(listening: bool = True, plugin: Plugin | None = None) -> tuple[int, dict]:
            return health(
                listening=listening,
                connections_open=0,
                restricted_users=1,
                reporter=kafka,
                plugins=[plugin or Plugin()],
            )

        code, body = check()
        assert (code, body["status"]) == (200, "ok")
        assert body["checks"]["restrictions"]["restricted_users"] == 1
        assert body["checks"]["producer"]["connected"] is True

        kafka.connected = False  # Kafka away: still serving, so still in rotation
        assert check()[1]["status"] == "degraded"
        assert check(plugin=Plugin(streaming=False))[1]["status"] == "degraded"
        code, body = check(plugin=Plugin(loaded=False))
        assert (code, body["status"]) == (503, "unavailable")
        code, body = check(listening=False)  # starting or draining
        assert (code, body["checks"]["listening"]) == (503, False)

    def test_a_local_reporter_has_no_producer_to_report(self) -> None:
        code, body = health(
            listening=True,
            connections_open=2,
            restricted_users=0,
            reporter=MemoryReporter(),
            plugins=[],
        )
        body = json.loads(json.dumps(body))  # what /healthz sends
        assert (code, body["status"], body["connections_open"]) == (200, "ok", 2)
        assert body["checks"]["producer"] == {
            "applicable": False,
            "connected": None,
            "reporter": "MemoryReporter",
        }


@pytest.fixture(scope="module")
def admin_proxy(
    proxy_users: dict, echo: EchoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    control_port = free_port()
    proc = ProxyProcess(
        tmp_path_factory.mktemp("admin-proxy"),
        {
            "PROXY_CONTROL_PLUGINS": "proxy_daemon.tests.control_plugin.LineControlPlugin",
            "PROXY_TEST_CONTROL_PORT": str(control_port),
            "PROXY_ADMIN_PORT": str(free_port()),
            "PROXY_AUTH_FAIL_LIMIT": "100000",
            "PROXY_ALLOWED_CONNECT_PORTS": str(echo.port),
        },
        "goproxy_site.settings.test",
    ).start()
    proc.control_port = control_port
    proc.admin_port = int(proc.env["PROXY_ADMIN_PORT"])
    yield proc
    assert proc.stop() == 0, proc.log()


class AdminPortTests:
    def test_healthz_reports_listening_and_restrictions(self, admin_proxy) -> None:
        assert f"admin port on 127.0.0.1:{admin_proxy.admin_port}" in admin_proxy.log()
        status, body = get(admin_proxy.admin_port, "/healthz")
        assert status == 200
        data = json.loads(body)
        assert data["status"] == "ok"
        assert data["checks"]["listening"] is True
        assert data["checks"]["restrictions"]["loaded"] is True
        # The file reporter has no broker connection to report.
        assert data["checks"]["producer"]["applicable"] is False

    def test_unknown_path_and_method_get_clear_errors(self, admin_proxy) -> None:
        assert get(admin_proxy.admin_port, "/nope")[0] == 404
        status, body = get(admin_proxy.admin_port, "/metrics", method="POST")
        assert status == 405 and b"only GET" in body

    def test_metrics_follow_traffic(self, admin_proxy, proxy_users, origin, echo) -> None:
        alice, bob = proxy_users["px-alice"], proxy_users["px-bob"]
        port = admin_proxy.admin_port
        before = scrape(port)

        def ask(path: str, header: str | None) -> int:
            c = RawClient(admin_proxy.port)
            extra = f"Proxy-Authorization: {header}\r\n" if header else ""
            c.send(f"GET {origin.url(path)} HTTP/1.1\r\n{extra}Connection: close\r\n\r\n".encode())
            status = c.response().status
            c.close()
            return status

        assert ask("/hello", basic(alice.login, alice.secret)) == 200
        assert ask("/big?n=300000", basic(alice.login, alice.secret)) == 200
        assert ask("/status?code=404", basic(alice.login, alice.secret)) == 404
        assert ask("/hello", None) == 407
        assert ask("/hello", basic(alice.login, "wrong-secret")) == 407

        tunnel = RawClient(admin_proxy.port)
        try:
            tunnel.send(
                f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n"
                f"Proxy-Authorization: {basic(bob.login, bob.secret)}\r\n\r\n".encode()
            )
            assert tunnel.response(head_only=True).status == 200
            tunnel.send(b"ping" * 1000)
            assert tunnel.recv_exact(4000) == b"ping" * 1000
            during = scrape(port)  # while the tunnel is open
            assert value(during, "goproxy_proxy_connections_open") >= 1
            assert value(during, "goproxy_proxy_users_connected") >= 1
            # bob is restricted while his tunnel is open: cut, then refused.
            control_call(admin_proxy.control_port, f"restrict {bob.user_id} test")
            assert tunnel.recv_until_close() == b""
            tunnel.close()
            assert ask("/hello", basic(bob.login, bob.secret)) == 403
        finally:
            control_call(admin_proxy.control_port, f"lift {bob.user_id}")

        # Byte counters reach exactly what the meter handed to the reporter.
        def billed() -> tuple[int, int]:
            totals = admin_proxy.meter_totals()
            return (
                sum(up for up, _ in totals.values()),
                sum(down for _, down in totals.values()),
            )

        def settled() -> Samples | None:
            now = scrape(port)
            got = (
                value(now, "goproxy_proxy_bytes_total", direction="in"),
                value(now, "goproxy_proxy_bytes_total", direction="out"),
            )
            return now if got == billed() and got[1] > 300000 else None

        after = wait_for_value(settled)
        assert after is not None, (scrape(port), billed())

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("goproxy_proxy_requests_total", status="200") == 3  # 2 GETs + CONNECT
        assert delta("goproxy_proxy_requests_total", status="404") == 1
        assert delta("goproxy_proxy_requests_total", status="407") == 2
        assert delta("goproxy_proxy_requests_total", status="403") == 1
        assert delta("goproxy_proxy_auth_failures_total", reason="missing") == 1
        assert delta("goproxy_proxy_auth_failures_total", reason="invalid") == 1
        assert delta("goproxy_proxy_restriction_cuts_total") == 1
        assert delta("goproxy_proxy_restriction_refusals_total") == 1
        assert delta("goproxy_proxy_connections_accepted_total") == 7
        assert value(after, "goproxy_proxy_restricted_users") == 0
        assert value(after, "process_resident_memory_bytes") > 0


def wait_for_value(fn, timeout: float = 5.0):
    result = None
    for _ in range(int(timeout / 0.1)):
        result = fn()
        if result is not None:
            return result
        time.sleep(0.1)
    return result


class AdminPortErrorTests:
    def test_a_taken_admin_port_stops_the_proxy_with_a_clear_error(self, tmp_path: Path) -> None:
        taken = socket.create_server(("127.0.0.1", 0))
        try:
            proc = ProxyProcess(
                tmp_path,
                {"PROXY_ADMIN_PORT": str(taken.getsockname()[1])},
                "goproxy_site.settings.test",
            )
            result = proc.run()
        finally:
            taken.close()
        assert result.returncode != 0
        assert b"cannot open the admin port" in result.stderr
