"""The connection registry: restrictions, throttles, cuts and cache drops, in-process and
through the running daemon (driven by the line control plugin)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from gevent import socket as gsocket

from accounts.models import ProxyCredential
from accounts.services import credential_rotate
from goproxy_site.tests.support.proxy import (
    E2E,
    RawClient,
    basic,
    committed,
    open_tunnel,
    proxied_get,
)
from proxy_daemon.auth import AuthCache, Principal
from proxy_daemon.limits import UNLIMITED, UserLimits, UserLimitsCache
from proxy_daemon.metrics import ProxyMetrics
from proxy_daemon.registry import UNTHROTTLED_BPS, ConnectionRegistry
from proxy_daemon.server import ClientConnection
from proxy_daemon.sockio import BufferPool
from proxy_daemon.tunnel import Tunnel

from .control_plugin import control_call

PLANS = {1: UserLimits(max_connections=2, speed_bps=None), 2: UserLimits(speed_bps=50_000)}


class Parts:
    """A registry over real caches, and client connections on gevent socket pairs."""

    def __init__(self) -> None:
        self.loads: list[int] = []
        self.limits = UserLimitsCache(self._load, ttl=60)
        self.credentials = AuthCache(key=b"k", ttl=60)
        self.metrics = ProxyMetrics()
        self.registry = ConnectionRegistry(
            limits=self.limits, credentials=self.credentials, metrics=self.metrics
        )
        self.sockets: list[gsocket.socket] = []

    def _load(self, user_id: int) -> UserLimits:
        self.loads.append(user_id)
        return PLANS.get(user_id, UNLIMITED)

    def connection(self, user_id: int | None = None) -> ClientConnection:
        a, b = gsocket.socketpair()
        self.sockets += [a, b]
        conn = ClientConnection(b, "10.0.0.1")
        self.registry.add(conn)
        if user_id is not None:
            assert self.registry.claim(conn, user_id, self.limits.get(user_id).max_connections)
        return conn

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def parts() -> Iterator[Parts]:
    p = Parts()
    yield p
    p.close()


class ConnectionRegistryTests:
    def test_slots_follow_the_plan_and_are_given_back(self, parts: Parts) -> None:
        registry = parts.registry
        first, second = parts.connection(1), parts.connection(1)
        third = parts.connection()
        assert registry.claim(third, 1, 2) is False  # the plan allows 2
        assert third.user_id is None and registry.by_user[1] == {first, second}
        registry.remove(first)
        assert registry.claim(third, 1, 2) is True
        assert registry.claim(third, 3, None) is True  # another user on the same connection
        assert registry.by_user == {1: {second}, 3: {third}}
        registry.remove(second)
        registry.remove(third)
        assert registry.by_user == {} and registry.connections == set()
        assert registry.counter.counts == {}

    def test_restrict_cuts_the_users_connections_and_lift_ends_it(self, parts: Parts) -> None:
        registry = parts.registry
        mine, theirs = parts.connection(1), parts.connection(3)
        registry.restrict(1, "traffic limit reached")
        assert mine.cut_reason == "user restricted: traffic limit reached"
        assert theirs.cut_reason is None
        assert registry.restriction(1) == "traffic limit reached"
        assert registry.restricted() == {1: "traffic limit reached"}
        assert parts.metrics.restriction_cuts == 1
        registry.lift(1)
        assert registry.restriction(1) is None and registry.restricted() == {}

    def test_a_throttle_reaches_open_tunnels_and_its_end_frees_them(self, parts: Parts) -> None:
        registry = parts.registry
        conn = parts.connection(3)  # no speed limit on the plan
        a, b = gsocket.socketpair()
        parts.sockets += [a, b]
        conn.tunnel = Tunnel(
            a,
            b,
            idle_timeout=1,
            pool=BufferPool(1024, 1),
            on_up=lambda n: None,
            on_down=lambda n: None,
        )
        registry.throttle(3, 10_000)
        pair = conn.buckets
        assert pair is not None and pair[0].rate == pair[1].rate == 10_000
        assert (conn.tunnel.up_bucket, conn.tunnel.down_bucket) == pair
        assert registry.buckets(3, None) is pair  # new requests share the same buckets
        registry.throttle(3, None)
        # Unlimited again: anything still holding the old pair stops waiting.
        assert pair[0].rate == pair[1].rate == UNTHROTTLED_BPS
        assert conn.buckets is None
        assert (conn.tunnel.up_bucket, conn.tunnel.down_bucket) == (None, None)
        registry.throttle(3, None)  # not throttled: nothing changes

    def test_a_throttle_never_raises_a_lower_plan_speed(self, parts: Parts) -> None:
        registry = parts.registry
        conn = parts.connection(2)  # plan speed 50 kB/s
        registry.throttle(2, 80_000)
        assert conn.buckets is not None and conn.buckets[0].rate == 50_000
        registry.throttle(2, 20_000)
        assert conn.buckets[0].rate == 20_000
        registry.throttle(2, None)
        assert conn.buckets[0].rate == 50_000  # back to the plan's speed

    def test_cache_drops_reach_the_credential_and_limits_caches(self, parts: Parts) -> None:
        registry = parts.registry
        key = parts.credentials.cache_key("me", "secret")
        parts.credentials.put(key, Principal(user_id=1, login="me", credential_id=9))
        registry.invalidate_credentials(login="me")
        assert parts.credentials.get(key) is None
        parts.limits.get(1)
        registry.refresh_user_limits(1)
        parts.limits.get(1)
        assert parts.loads == [1, 1]  # loaded again after the refresh


@E2E
class RestrictionTests:
    def test_restrict_refuses_with_reason_cuts_open_tunnels_and_lift_restores(
        self, proxy, proxy_users, origin, echo
    ) -> None:
        u = proxy_users["px-restrict"]
        tunnel = open_tunnel(proxy, u, echo.port)
        keepalive = proxied_get(proxy, u, origin.url("/hello"))
        assert keepalive.response().status == 200
        assert control_call(proxy.control_port, f"restrict {u.user_id} traffic limit reached")
        # Open connections are closed at once (bounded wait of 1 s).
        tunnel.sock.settimeout(1.0)
        assert tunnel.recv_until_close() == b""
        keepalive.sock.settimeout(1.0)
        assert keepalive.recv_until_close() == b""
        c = proxied_get(proxy, u, origin.url("/hello"))
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
        assert proxied_get(proxy, u, origin.url("/hello")).response().status == 200

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
        u = proxy_users["px-cut"]
        assert proxied_get(proxy, u, origin.url("/hello")).response().status == 200
        committed(lambda: credential_rotate(credential=ProxyCredential.objects.get(login=u.login)))
        control_call(proxy.control_port, f"invalidate {u.user_id}")
        assert proxied_get(proxy, u, origin.url("/hello")).response().status == 407
