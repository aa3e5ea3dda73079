"""Live control (restrictions, cuts, plan limits), 100 MB streaming memory, policy, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from .conftest import E2E, LIMITED_PLAN
from .control_plugin import control_call
from .support import ProxyProcess, RawClient, basic, wait_for
from .test_tunnel import open_tunnel

pytestmark = E2E
MIB = 1024 * 1024


def get(proxy, user, url: str, extra: str = "") -> RawClient:
    """A raw connection that has sent one authorised GET."""
    c = RawClient(proxy.port)
    c.send(
        f"GET {url} HTTP/1.1\r\nProxy-Authorization: {basic(*user.auth)}\r\n{extra}\r\n".encode()
    )
    return c


class RestrictionTests:
    def test_restrict_refuses_with_reason_cuts_open_tunnels_and_lift_restores(
        self, proxy, proxy_users, origin, echo
    ) -> None:
        u = proxy_users["px-restrict"]
        tunnel = open_tunnel(proxy, u, echo.port)
        keepalive = get(proxy, u, origin.url("/hello"))
        assert keepalive.response().status == 200
        assert control_call(proxy.control_port, f"restrict {u.user_id} traffic limit reached")
        # Open connections are closed at once (bounded wait of 1 s).
        tunnel.sock.settimeout(1.0)
        assert tunnel.recv_until_close() == b""
        keepalive.sock.settimeout(1.0)
        assert keepalive.recv_until_close() == b""
        c = get(proxy, u, origin.url("/hello"))
        r = c.response()
        assert r.status == 403 and b"traffic limit reached" in r.body
        c.close()
        c = RawClient(proxy.port)
        c.send(
            f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n"
            f"Proxy-Authorization: {basic(*u.auth)}\r\n\r\n".encode()
        )
        assert c.response().status == 403
        c.close()
        restricted = control_call(proxy.control_port, "restricted")
        assert restricted == {str(u.user_id): "traffic limit reached"}
        control_call(proxy.control_port, f"lift {u.user_id}")
        assert get(proxy, u, origin.url("/hello")).response().status == 200

    def test_throttle_slows_an_open_tunnel_without_cutting_it(
        self, proxy, proxy_users, echo
    ) -> None:
        u = proxy_users["px-throttle"]
        tunnel = open_tunnel(proxy, u, echo.port)
        tunnel.send(b"ping")
        assert tunnel.recv_exact(4) == b"ping"
        rate = 256 * 1024
        assert control_call(proxy.control_port, f"throttle {u.user_id} {rate}") == "ok"
        try:
            # Three seconds' worth at the throttled rate; the one-second burst is free,
            # so the echo cannot come back in under ~2 s if the tunnel really slowed down.
            payload = os.urandom(3 * rate)
            started = time.monotonic()
            tunnel.send(payload)
            assert tunnel.recv_exact(len(payload)) == payload
            assert time.monotonic() - started >= 1.6
        finally:
            control_call(proxy.control_port, f"throttle {u.user_id} none")
        # Unthrottled again, and still the same open tunnel.
        tunnel.send(b"pong")
        assert tunnel.recv_exact(4) == b"pong"
        tunnel.close()

    def test_invalidate_credentials_drops_the_cache_at_once(
        self, proxy, proxy_users, origin
    ) -> None:
        from accounts.models import ProxyCredential
        from accounts.services import credential_rotate

        from .conftest import committed

        u = proxy_users["px-cut"]
        assert get(proxy, u, origin.url("/hello")).response().status == 200
        committed(lambda: credential_rotate(credential=ProxyCredential.objects.get(login=u.login)))
        control_call(proxy.control_port, f"invalidate {u.user_id}")
        assert get(proxy, u, origin.url("/hello")).response().status == 407


class PlanLimitTests:
    def test_concurrent_connection_limit_from_plan(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-limited"]
        held = [get(proxy, u, origin.url("/hello")) for _ in range(LIMITED_PLAN["max_connections"])]
        for c in held:
            assert c.response().status == 200
        extra = get(proxy, u, origin.url("/hello"))
        r = extra.response()
        assert r.status == 429 and b"concurrent connections" in r.body
        extra.close()
        held[0].close()
        # The slot is released when the connection closes.
        assert wait_for(lambda: get(proxy, u, origin.url("/hello")).response().status == 200)
        for c in held[1:]:
            c.close()

    def test_speed_limit_from_plan_throttles_downloads(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-limited"]
        rate = LIMITED_PLAN["speed_limit_bps"]
        size = 3 * rate
        started = time.monotonic()
        c = get(proxy, u, origin.url(f"/big?n={size}"), "Connection: close\r\n")
        assert len(c.response().body) == size
        c.close()
        # A lower bound only: one second of burst, then the bucket's rate.
        assert time.monotonic() - started >= (size - rate) / rate * 0.9


class StreamingMemoryTests:
    def test_100_mb_each_way_keeps_proxy_memory_flat(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-memory"]
        size = 100 * MIB
        rss_before = proxy.rss_kib("VmRSS")
        c = get(proxy, u, origin.url(f"/big?n={size}"))
        head = c.response(head_only=True)
        assert head.header("Content-Length") == str(size)
        received = len(c.buf)  # body bytes that arrived with the head
        while received < size:
            chunk = c.sock.recv(MIB)
            assert chunk
            received += len(chunk)
        c.close()
        up = RawClient(proxy.port)
        up.send(
            f"POST {origin.url('/sink')} HTTP/1.1\r\nProxy-Authorization: {basic(*u.auth)}\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        block = b"u" * MIB
        for _ in range(100):
            up.send(block)
        assert up.response().body == str(size).encode()
        up.close()
        grown_mib = (proxy.rss_kib("VmHWM") - rss_before) / 1024
        # Buffering either body whole would add >= 100 MiB.
        assert grown_mib < 40, f"proxy peak RSS grew by {grown_mib:.0f} MiB"


@pytest.fixture(scope="module")
def strict_proxy(proxy_users, tmp_path_factory):
    proc = ProxyProcess(
        tmp_path_factory.mktemp("strict"),
        {"PROXY_HEADER_TIMEOUT": "1", "PROXY_DRAIN_TIMEOUT": "5"},
        "proxy_daemon.tests.settings_strict",
    ).start()
    yield proc
    proc.stop()


class ProductionPolicyTests:
    def test_private_destinations_refused_with_reason(
        self, strict_proxy, proxy_users, origin
    ) -> None:
        u = proxy_users["px-alice"]
        for url, reason in [
            (origin.url("/hello"), b"loopback"),
            ("http://localhost:9/", b"loopback"),
            ("http://10.0.0.1/", b"private"),
            ("http://169.254.169.254/latest/meta-data/", b"link-local"),
            ("http://[::1]:80/", b"loopback"),
            ("http://100.64.0.1/", b"CGNAT"),
        ]:
            r = get(strict_proxy, u, url).response()
            assert r.status == 403, url
            assert reason in r.body, (url, r.body)
        c = RawClient(strict_proxy.port)
        auth = basic(*u.auth)
        c.send(f"CONNECT 127.0.0.1:443 HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
        r = c.response()
        assert r.status == 403 and b"loopback" in r.body

    def test_failed_logins_are_throttled_per_ip(self, strict_proxy, proxy_users, origin) -> None:
        statuses = [
            get(strict_proxy, proxy_users["px-alice"].__class__(0, "px-alice", "bad"), "http://a/")
            .response()
            .status
            for _ in range(4)
        ]
        # settings_strict allows 3 failures per window; the 4th attempt is refused.
        assert statuses == [407, 407, 407, 429]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


class ConnectionCapTests:
    def test_global_connection_cap_answers_503(self, proxy_users, origin, tmp_path) -> None:
        proc = ProxyProcess(tmp_path, {"PROXY_MAX_CONNECTIONS": "2"}, "goproxy_site.settings.test")
        proc.start()
        try:
            u = proxy_users["px-alice"]
            held = [get(proc, u, origin.url("/hello")) for _ in range(2)]
            for c in held:
                assert c.response().status == 200
            extra = RawClient(proc.port)
            r = extra.response()
            assert r.status == 503 and b"connection limit" in r.body
            extra.close()
            for c in held:
                c.close()
        finally:
            proc.stop()


class ShutdownTests:
    def test_sigterm_drains_in_flight_request_flushes_meter_and_exits_0(
        self, proxy_users, origin, tmp_path
    ) -> None:
        # Its own daemon, metering only at shutdown (interval 60 s), so the final flush
        # is what delivers the bytes.
        proc = ProxyProcess(
            tmp_path, {"PROXY_METER_INTERVAL": "60", "PROXY_DRAIN_TIMEOUT": "5"},
            "goproxy_site.settings.test",
        ).start()  # fmt: skip
        try:
            u = proxy_users["px-alice"]
            idle = get(proxy=proc, user=u, url=origin.url("/hello"))
            assert idle.response().status == 200
            slow = get(proxy=proc, user=u, url=origin.url("/slow?s=1.5"))
            time.sleep(0.3)
            os.kill(proc.proc.pid, signal.SIGTERM)
            # The listener closes at once: new connections are refused while old ones drain.
            assert wait_for(lambda: _refused(proc.port), 2)
            r = slow.response()
            assert r.status == 200 and r.body == b"late"
            idle.sock.settimeout(5)
            assert idle.recv_until_close() == b""
            assert proc.proc.wait(timeout=15) == 0
            sent = idle.sent + slow.sent
            received = idle.received + slow.received
            assert proc.meter_totals()[u.user_id] == (sent, received)
            assert "proxy stopped" in proc.log()
        finally:
            proc.stop()
