"""The accept path in-process: the listener callback, parked connection greenlets and
ClientSocket (the end-to-end suites drive it through the real daemon)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from gevent import getcurrent
from gevent import socket as gsocket

from proxy_daemon import server as server_module
from proxy_daemon.auth import AuthCache, Authenticator, FailureThrottle
from proxy_daemon.limits import UNLIMITED, UserLimitsCache
from proxy_daemon.metering import Meter
from proxy_daemon.metrics import ProxyMetrics
from proxy_daemon.policy import DestinationPolicy
from proxy_daemon.registry import ConnectionRegistry
from proxy_daemon.server import ProxyConfig, ProxyServer
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


@pytest.fixture
def echo_server() -> Iterator[EchoOnce]:
    listener = gsocket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    credentials = AuthCache(key=b"k", ttl=1)
    limits = UserLimitsCache(lambda uid: UNLIMITED, ttl=1)
    metrics = ProxyMetrics()
    srv = EchoOnce(
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
    )
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


def test_client_socket_close_wakes_a_greenlet_waiting_on_it() -> None:
    a, b = socket.socketpair()
    sock = ClientSocket(b.family, b.detach(), gevent.get_hub())
    outcome: list[Any] = []

    def reader() -> None:
        try:
            outcome.append(sock.recv(10))
        except OSError as exc:
            outcome.append(exc)

    g = gevent.spawn(reader)
    gevent.sleep(0.05)  # the reader waits on the socket's read watcher
    sock.close()
    g.join(timeout=5)
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)  # woken, not hung
    a.close()


def test_client_socket_close_releases_the_descriptor() -> None:
    a, b = socket.socketpair()
    sock = ClientSocket(b.family, b.detach(), gevent.get_hub())
    fd = sock.fileno()
    a.sendall(b"hi")
    assert sock.recv(10) == b"hi"
    sock.close()
    sock.close()  # twice is harmless
    assert sock._read_event is None and sock._write_event is None
    with pytest.raises(OSError):
        socket.socket(fileno=fd).close()  # the descriptor is gone, not leaked
    assert a.recv(10) == b""  # the peer sees EOF
    a.close()


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
