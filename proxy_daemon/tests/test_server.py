"""The server: its accept path in-process (the listener callback, parked connection
greenlets), admission, and plan limits, streaming memory and the connection cap on the
real daemon."""

from __future__ import annotations

import errno
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from django.conf import settings
from gevent import getcurrent
from gevent import socket as gsocket
from redis import Redis

from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import (
    E2E,
    LIMITED_PLAN,
    ProxyProcess,
    RawClient,
    basic,
    proxied_get,
)
from proxy_daemon import server as server_module
from proxy_daemon.auth import AuthCache, Authenticator, FailureThrottle, Principal
from proxy_daemon.devices import DeviceGuard
from proxy_daemon.errors import Forbidden
from proxy_daemon.limits import UNLIMITED, UserLimits, UserLimitsCache
from proxy_daemon.metering import Meter
from proxy_daemon.metrics import ProxyMetrics
from proxy_daemon.policy import DestinationPolicy
from proxy_daemon.registry import ConnectionRegistry
from proxy_daemon.server import ClientConnection, ProxyConfig, ProxyServer
from proxy_daemon.sockio import ClientSocket


class EchoOnce(ProxyServer):
    """Answers one line per connection and records which greenlet served it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.served_by: list[Any] = []
        self.socket_types: list[type] = []

    def handle(self, sock: Any, address: Any) -> None:
        self.served_by.append(getcurrent())
        self.socket_types.append(type(sock))
        try:
            data = sock.recv(100)
            sock.sendall(b"echo:" + data)
        finally:
            sock.close()


def server_build(
    cls: type[ProxyServer] = ProxyServer,
    listener: Any = ("127.0.0.1", 0),
    *,
    plans: dict[int, UserLimits] | None = None,
    devices: DeviceGuard | None = None,
) -> Any:
    """A server with in-memory parts: users' plan limits from `plans`, no credentials."""
    credentials = AuthCache(key=b"k", ttl=1)
    limits = UserLimitsCache(lambda uid: (plans or {}).get(uid, UNLIMITED), ttl=60)
    metrics = ProxyMetrics()
    return cls(
        listener,
        config=ProxyConfig(),
        authenticator=Authenticator(
            cache=credentials,
            throttle=FailureThrottle(limit=5, window=1),
            lookup=lambda login, secret: None,
        ),
        policy=DestinationPolicy(allow_private=True, connect_ports=frozenset()),
        meter=Meter(),
        limits=limits,
        registry=ConnectionRegistry(limits=limits, credentials=credentials, metrics=metrics),
        metrics=metrics,
        devices=devices,
    )


@pytest.fixture
def echo_server() -> Iterator[EchoOnce]:
    listener = gsocket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    srv: EchoOnce = server_build(EchoOnce, listener)
    srv.start()
    yield srv
    srv.stop()


def _talk(port: int, payload: bytes) -> bytes:
    with gsocket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(payload)
        return c.recv(100)


def test_sequential_connections_reuse_one_parked_greenlet(echo_server: EchoOnce) -> None:
    port = echo_server.server_port
    answers = [_talk(port, f"n{i}".encode()) for i in range(20)]
    assert answers == [f"echo:n{i}".encode() for i in range(20)]
    assert set(echo_server.socket_types) == {ClientSocket}
    # One greenlet served them all, parked between connections.
    assert len({id(g) for g in echo_server.served_by}) == 1
    assert len(echo_server._idle_workers) == 1


def test_concurrent_connections_get_their_own_greenlets(echo_server: EchoOnce) -> None:
    port = echo_server.server_port
    clients = [gsocket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
    gevent.sleep(0.1)  # all accepted, each greenlet waiting in recv
    for i, c in enumerate(clients):
        c.sendall(b"%d" % i)
    assert [c.recv(100) for c in clients] == [b"echo:%d" % i for i in range(5)]
    for c in clients:
        c.close()
    gevent.sleep(0.05)
    assert len({id(g) for g in echo_server.served_by}) == 5
    assert len(echo_server._idle_workers) == 5


def test_parked_greenlets_are_capped(
    echo_server: EchoOnce, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "IDLE_WORKERS", 2)
    port = echo_server.server_port
    clients = [gsocket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    gevent.sleep(0.1)
    for c in clients:
        c.sendall(b"x")
        assert c.recv(100) == b"echo:x"
        c.close()
    gevent.sleep(0.05)
    assert len(echo_server._idle_workers) == 2
    assert all(not g.dead for g in echo_server._idle_workers)


class FailingListener:
    """Stands in for the listening socket: accept() fails with the given errors first."""

    family = socket.AF_INET

    def __init__(self, *errors: OSError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def _accept(self) -> tuple[int, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        raise BlockingIOError()


def test_one_clients_failed_accept_is_skipped(echo_server: EchoOnce) -> None:
    real = echo_server.socket
    echo_server.socket = FailingListener(OSError(errno.ECONNABORTED, "aborted"))
    try:
        echo_server._do_read()
    finally:
        echo_server.socket = real
    assert echo_server.socket is real
    assert echo_server._watcher is not None  # still accepting
    assert _talk(echo_server.server_port, b"after") == b"echo:after"


def test_other_accept_errors_pause_accepting_instead_of_spinning(echo_server: EchoOnce) -> None:
    real = echo_server.socket
    failing = FailingListener(OSError(errno.ENOBUFS, "No buffer space available"))
    echo_server.socket = failing
    try:
        echo_server._do_read()
    finally:
        echo_server.socket = real
    assert failing.calls == 1  # no retry loop on the failing listener
    assert echo_server._watcher is None  # paused
    gevent.sleep(0.3)
    assert echo_server._watcher is not None  # accepting again after the pause
    assert _talk(echo_server.server_port, b"back") == b"echo:back"


def test_a_killed_parked_greenlet_leaves_the_pool(echo_server: EchoOnce) -> None:
    port = echo_server.server_port
    assert _talk(port, b"one") == b"echo:one"
    gevent.sleep(0.01)
    [parked] = echo_server._idle_workers
    gevent.kill(parked)
    gevent.sleep(0.01)
    assert parked.dead and echo_server._idle_workers == []
    assert _talk(port, b"two") == b"echo:two"  # served by a new greenlet, not lost
    assert echo_server.served_by[-1] is not parked


class AdmissionTests:
    """What a server checks when it admits a user on a connection (before any upstream)."""

    @pytest.fixture
    def redis(self) -> Iterator[tuple[Redis, str]]:
        client = Redis.from_url(settings.PLANS_DEVICE_REDIS_URL)
        prefix = f"goproxy:test{os.environ.get('GOPROXY_TEST_DB_SUFFIX', '')}:{uuid.uuid4().hex}:"
        yield client, prefix
        for key in client.keys(prefix + "*"):
            client.delete(key)

    @pytest.fixture
    def connection(self) -> Iterator[Callable[[str], ClientConnection]]:
        """Client connections from a given IP, on gevent socket pairs."""
        sockets: list[gsocket.socket] = []

        def make(ip: str) -> ClientConnection:
            a, b = gsocket.socketpair()
            sockets.extend((a, b))
            return ClientConnection(b, ip)

        yield make
        for sock in sockets:
            sock.close()

    def test_a_restricted_user_is_refused_with_the_reason(self, connection) -> None:
        srv = server_build()
        srv.registry.restrict(7, "plan expired")
        with pytest.raises(Forbidden, match="user restricted: plan expired"):
            srv._admit(connection("10.0.0.1"), Principal(7, "u", 1))
        assert srv.metrics.restriction_refusals == 1

    def test_the_device_limit_comes_with_the_plan(self, connection, redis) -> None:
        client, prefix = redis
        guard = DeviceGuard(client, window=60, cache_seconds=0, prefix=prefix)
        srv = server_build(plans={1: UserLimits(device_limit=1)}, devices=guard)
        srv._admit(connection("10.0.0.1"), Principal(1, "one-device", 1))
        with pytest.raises(Forbidden, match="the plan allows 1 client IP address"):
            srv._admit(connection("10.0.0.2"), Principal(1, "one-device", 1))
        # A plan without a device limit never asks Redis.
        for i in range(3):
            srv._admit(connection(f"10.0.1.{i}"), Principal(2, "no-limit", 2))
        assert client.keys(prefix + "*") == [f"{prefix}1".encode()]


@E2E
class PlanLimitTests:
    def test_concurrent_connection_limit_from_plan(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-limited"]
        held = [
            proxied_get(proxy, u, origin.url("/hello"))
            for _ in range(LIMITED_PLAN["max_connections"])
        ]
        for c in held:
            assert c.response().status == 200
        extra = proxied_get(proxy, u, origin.url("/hello"))
        r = extra.response()
        assert r.status == 429 and b"concurrent connections" in r.body
        extra.close()

        def slot_free() -> bool:
            probe = proxied_get(proxy, u, origin.url("/hello"))
            try:
                return probe.response().status == 200
            finally:
                probe.close()  # a probe left open would hold a slot for the next test

        held[0].close()
        # The slot is released when the connection closes.
        assert wait_for(slot_free)
        for c in held[1:]:
            c.close()
        assert wait_for(slot_free)

    def test_speed_limit_from_plan_throttles_downloads(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-limited"]
        rate = LIMITED_PLAN["speed_limit_bps"]
        size = 3 * rate
        started = time.monotonic()
        c = proxied_get(proxy, u, origin.url(f"/big?n={size}"), "Connection: close\r\n")
        assert len(c.response().body) == size
        c.close()
        # A lower bound only: one second of burst, then the bucket's rate.
        assert time.monotonic() - started >= (size - rate) / rate * 0.9


@E2E
class StreamingMemoryTests:
    def test_100_mb_each_way_keeps_proxy_memory_flat(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-memory"]
        size = 100 * MIB
        rss_before = proxy.rss_kib("VmRSS")
        c = proxied_get(proxy, u, origin.url(f"/big?n={size}"))
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


MIB = 1024 * 1024


@E2E
class ConnectionCapTests:
    def test_global_connection_cap_answers_503(self, proxy_users, origin, tmp_path) -> None:
        proc = ProxyProcess(tmp_path, {"PROXY_MAX_CONNECTIONS": "2"}, "goproxy_site.settings.test")
        proc.start()
        try:
            u = proxy_users["px-alice"]
            held = [proxied_get(proc, u, origin.url("/hello")) for _ in range(2)]
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
