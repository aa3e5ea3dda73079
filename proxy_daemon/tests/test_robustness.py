"""Robustness: slow clients, connection floods, failing upstreams, credential brute force.

Each test drives the real `runproxy` subprocess over real sockets with tight limits
(1 s header/body timeouts, 30 connections, 5 failed logins per IP) and checks both the
refusal and that well-behaved clients are served meanwhile. Every loop is bounded.
"""

from __future__ import annotations

import socket
import socketserver
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goproxy_site.tests.support.net import free_port
from goproxy_site.tests.support.proxy import (
    E2E,
    EchoServer,
    OriginServer,
    ProxyProcess,
    ProxyUser,
    basic,
)
from proxy_daemon.auth import IP_CEILING_FACTOR

pytestmark = E2E

MAX_CONNECTIONS = 30
FAIL_LIMIT = 5
HEADER_TIMEOUT = 1.0
UPSTREAM_TIMEOUT = 1.5


def origin_request(origin: OriginServer, user: ProxyUser | None, path: str = "/") -> bytes:
    auth = f"Proxy-Authorization: {basic(*user.auth)}\r\n" if user else ""
    return (
        f"GET {origin.url(path)} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n{auth}\r\n"
    ).encode()


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int | None, bytes]:
    """(status, bytes) of whatever arrives until the head is complete or the peer closes."""
    sock.settimeout(timeout)
    data = b""
    for _ in range(1000):
        if b"\r\n\r\n" in data:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else None
    return status, data


def read_until_close(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    for _ in range(10_000):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("peer kept sending")


def roundtrip(port: int, data: bytes, source: str = "127.0.0.1") -> tuple[int | None, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(data)
        return read_response(s)


# Misbehaving origins -------------------------------------------------------------------
class _ReadHead(socketserver.BaseRequestHandler):
    def read_head(self) -> bool:
        data = b""
        for _ in range(100):
            chunk = self.request.recv(65536)
            if not chunk:
                return False
            data += chunk
            if b"\r\n\r\n" in data:
                return True
        return False


class ResetHandler(_ReadHead):
    """Reads the request, then resets the connection (RST, not FIN)."""

    def handle(self) -> None:
        if self.read_head():
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.request.close()


class StallHandler(_ReadHead):
    """Reads the request and never answers (until the proxy gives up)."""

    def handle(self) -> None:
        if self.read_head():
            self.request.settimeout(30)
            try:
                self.request.recv(1)
            except OSError:
                pass


class GarbageHandler(_ReadHead):
    def handle(self) -> None:
        if self.read_head():
            self.request.sendall(b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok")


class TruncatedBodyHandler(_ReadHead):
    """Promises 100000 bytes, sends 10, then resets."""

    def handle(self) -> None:
        if self.read_head():
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
            time.sleep(0.2)
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.request.close()


class StalledBodyHandler(_ReadHead):
    """Promises 100000 bytes, sends 10, then goes silent."""

    def handle(self) -> None:
        if self.read_head():
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
            self.request.settimeout(30)
            try:
                self.request.recv(1)
            except OSError:
                pass


HANDLERS = {
    "reset": ResetHandler,
    "stall": StallHandler,
    "garbage": GarbageHandler,
    "truncated": TruncatedBodyHandler,
    "stalled-body": StalledBodyHandler,
}


@pytest.fixture(scope="module")
def bad_origins() -> Iterator[dict[str, EchoServer]]:
    servers = {name: EchoServer(handler).start() for name, handler in HANDLERS.items()}
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def strict_proxy(
    proxy_users: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    proc = ProxyProcess(
        Path(tmp_path_factory.mktemp("strict")),
        {
            "PROXY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "PROXY_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "PROXY_BODY_TIMEOUT": "1",
            "PROXY_KEEPALIVE_TIMEOUT": "5",
            "PROXY_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
            "PROXY_CONNECT_TIMEOUT": "2",
            "PROXY_AUTH_FAIL_LIMIT": str(FAIL_LIMIT),
            "PROXY_AUTH_FAIL_WINDOW": "60",
            "PROXY_AUTH_CACHE_TTL": "30",
        },
        "goproxy_site.settings.test",
    ).start()
    yield proc
    rc = proc.stop()
    assert rc == 0, proc.log()


@pytest.fixture(scope="module")
def alice(proxy_users: dict) -> ProxyUser:
    return proxy_users["px-alice"]


class SlowClientTests:
    def test_slowloris_heads_are_dropped_while_normal_clients_are_served(
        self, strict_proxy: ProxyProcess, origin: OriginServer, alice: ProxyUser
    ) -> None:
        slow = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", strict_proxy.port), timeout=5)
            s.sendall(f"GET {origin.url()} HTTP/1.1\r\n".encode())
            slow.append(s)
        started = time.monotonic()
        # Well-behaved clients are answered while every slow head is still open.
        for _ in range(5):
            status, _data = roundtrip(strict_proxy.port, origin_request(origin, alice))
            assert status == 200
        assert time.monotonic() - started < HEADER_TIMEOUT
        # Each slow client keeps trickling header lines; the head deadline still ends it.
        outcomes = []
        for s in slow:
            s.settimeout(0.2)
            got = b""
            for _ in range(40):  # 40 x 0.2 s: far past the 1 s head timeout
                try:
                    s.sendall(b"X-Drip: 1\r\n")
                    chunk = s.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
            outcomes.append(got.split(b"\r\n", 1)[0])
            s.close()
        assert outcomes == [b"HTTP/1.1 408 Request Timeout"] * 10

    def test_stalled_request_body_is_dropped_at_the_body_timeout(
        self, strict_proxy: ProxyProcess, origin: OriginServer, alice: ProxyUser
    ) -> None:
        head = (
            f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
            f"Proxy-Authorization: {basic(*alice.auth)}\r\nContent-Length: 1000\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", strict_proxy.port), timeout=5) as s:
            s.sendall(head + b"x" * 10)
            status, _ = roundtrip(strict_proxy.port, origin_request(origin, alice))
            assert status == 200  # others are unaffected while the body stalls
            data = read_until_close(s, timeout=5)
        assert data.startswith(b"HTTP/1.1 408 ")
        assert b"too slow sending the request body" in data


class FloodTests:
    def test_flood_beyond_the_global_cap_is_refused_cleanly_and_the_proxy_recovers(
        self, strict_proxy: ProxyProcess, origin: OriginServer, alice: ProxyUser
    ) -> None:
        time.sleep(0.3)  # connections of earlier tests are gone
        flood = []
        for _ in range(MAX_CONNECTIONS * 3):
            flood.append(socket.create_connection(("127.0.0.1", strict_proxy.port), timeout=5))
        # While the flood holds every slot, a newcomer is refused at once, not left hanging.
        status, data = roundtrip(strict_proxy.port, origin_request(origin, alice))
        assert status == 503, data
        refused = held = 0
        for s in flood:
            first = read_until_close(s, timeout=HEADER_TIMEOUT + 3)
            if first.startswith(b"HTTP/1.1 503 "):
                assert b"connection limit" in first
                refused += 1
            else:
                # Held a slot without sending a head: dropped at the header timeout.
                assert first.startswith(b"HTTP/1.1 408 "), first[:80]
                held += 1
        assert held <= MAX_CONNECTIONS
        assert refused >= MAX_CONNECTIONS * 2
        for s in flood:
            s.close()
        # Recovery: once the flood is gone, requests are served again.
        statuses = []
        for _ in range(50):
            statuses.append(roundtrip(strict_proxy.port, origin_request(origin, alice))[0])
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200, statuses


class UpstreamFailureTests:
    @pytest.mark.parametrize(
        ("origin_name", "status"), [("reset", 502), ("garbage", 502), ("stall", 504)]
    )
    def test_failing_upstream_yields_an_error_status(
        self,
        strict_proxy: ProxyProcess,
        bad_origins: dict[str, EchoServer],
        alice: ProxyUser,
        origin_name: str,
        status: int,
    ) -> None:
        port = bad_origins[origin_name].port
        request = (
            f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Proxy-Authorization: {basic(*alice.auth)}\r\n\r\n"
        ).encode()
        started = time.monotonic()
        got, data = roundtrip(strict_proxy.port, request)
        assert got == status, data
        assert time.monotonic() - started < UPSTREAM_TIMEOUT + 3  # answered, never hung

    def test_refused_upstream_connection_is_502(
        self, strict_proxy: ProxyProcess, alice: ProxyUser
    ) -> None:
        port = free_port()  # nothing listens there
        request = (
            f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n"
            f"Proxy-Authorization: {basic(*alice.auth)}\r\n\r\n"
        ).encode()
        status, data = roundtrip(strict_proxy.port, request)
        assert status == 502
        assert b"cannot connect" in data

    @pytest.mark.parametrize("origin_name", ["truncated", "stalled-body"])
    def test_upstream_failing_mid_body_closes_the_client_connection(
        self,
        strict_proxy: ProxyProcess,
        bad_origins: dict[str, EchoServer],
        alice: ProxyUser,
        origin_name: str,
    ) -> None:
        port = bad_origins[origin_name].port
        request = (
            f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n"
            f"Proxy-Authorization: {basic(*alice.auth)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", strict_proxy.port), timeout=5) as s:
            s.sendall(request)
            # The head was already relayed, so the only honest signal left is to close
            # before Content-Length is reached; the client must not be left waiting.
            data = read_until_close(s, timeout=UPSTREAM_TIMEOUT + 3)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert body == b"0123456789"


class BruteForceTests:
    def test_failed_logins_from_one_ip_are_throttled_other_ips_unaffected(
        self, strict_proxy: ProxyProcess, origin: OriginServer, alice: ProxyUser
    ) -> None:
        attacker, other = "127.0.0.3", "127.0.0.4"
        wrong = ProxyUser(alice.user_id, alice.login, "not-the-secret")
        statuses = [
            roundtrip(strict_proxy.port, origin_request(origin, wrong), attacker)[0]
            for _ in range(FAIL_LIMIT + 3)
        ]
        assert statuses == [407] * FAIL_LIMIT + [429] * 3
        _status, data = roundtrip(strict_proxy.port, origin_request(origin, wrong), attacker)
        assert b"Retry-After: " in data
        # Another IP still gets honest answers: 407 for a wrong secret, 200 for the right one.
        assert roundtrip(strict_proxy.port, origin_request(origin, wrong), other)[0] == 407
        assert roundtrip(strict_proxy.port, origin_request(origin, alice), other)[0] == 200
        # Other logins from the throttled IP are judged on their own (other people behind
        # the same NAT), until the address's ceiling: IP_CEILING_FACTOR times the limit.
        ceiling = FAIL_LIMIT * IP_CEILING_FACTOR
        guesses = [ProxyUser(alice.user_id, f"px-guess-{i}", "guess") for i in range(ceiling)]
        statuses = [
            roundtrip(strict_proxy.port, origin_request(origin, guess), attacker)[0]
            for guess in guesses
        ]
        assert statuses == [407] * (ceiling - FAIL_LIMIT) + [429] * FAIL_LIMIT
        # Past it, any login from that address is refused without reaching the DB lookup.
        other_user = ProxyUser(alice.user_id, "px-bob", "guess")
        assert roundtrip(strict_proxy.port, origin_request(origin, other_user), attacker)[0] == 429


class DescriptorLimitTests:
    NOFILE = 128

    def test_at_the_descriptor_limit_clients_are_refused_cleanly_and_the_proxy_recovers(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        origin: OriginServer,
        echo: EchoServer,
        alice: ProxyUser,
    ) -> None:
        """Idle tunnels hold 2 descriptors each. At RLIMIT_NOFILE a new tunnel is either
        answered 503 (no descriptor for the upstream) or waits in the listen backlog
        (accepting paused), never a 500 and never a traceback per accept; once tunnels
        close, the proxy serves again."""
        proc = ProxyProcess(
            Path(tmp_path_factory.mktemp("nofile")),
            {"PROXY_ALLOWED_CONNECT_PORTS": str(echo.port), "PROXY_HEADER_TIMEOUT": "5"},
            "goproxy_site.settings.test",
            nofile=self.NOFILE,
        ).start()
        connect = (
            f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n"
            f"Proxy-Authorization: {basic(*alice.auth)}\r\n\r\n"
        ).encode()
        tunnels: list[socket.socket] = []
        refusal = b""
        try:
            for _ in range(self.NOFILE):  # bounded: the limit is reached well before
                s = socket.create_connection(("127.0.0.1", proc.port), timeout=2)
                tunnels.append(s)
                s.sendall(connect)
                try:
                    head = s.recv(200)
                except TimeoutError:
                    refusal = b"(accepting paused)"
                    break
                if not head.startswith(b"HTTP/1.1 200 "):
                    refusal = head
                    break
            assert refusal, "the descriptor limit was never reached"
            assert refusal == b"(accepting paused)" or refusal.startswith(b"HTTP/1.1 503 "), refusal
        finally:
            for s in tunnels:
                s.close()
        status = None
        for _ in range(50):  # bounded: up to ~10 s for the tunnels to wind down
            try:
                status, _data = roundtrip(proc.port, origin_request(origin, alice))
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
        log = proc.log()
        assert "Traceback" not in log, log
        assert proc.stop() == 0, proc.log()
