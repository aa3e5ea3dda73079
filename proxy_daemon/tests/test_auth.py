"""Proxy authentication: Basic parsing, the success cache, throttling, and every 407 case."""

from __future__ import annotations

import base64
import re
import socket
from collections import Counter

import pytest

from accounts.models import ProxyCredential, User
from accounts.services import credential_revoke
from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import (
    E2E,
    ProxyProcess,
    ProxyUser,
    RawClient,
    basic,
    committed,
    proxied_get,
)
from proxy_daemon.auth import (
    IP_CEILING_FACTOR,
    KEY_LOGIN_CHARS,
    AuthCache,
    Authenticator,
    AuthMemo,
    FailureThrottle,
    Principal,
    parse_basic,
)
from proxy_daemon.errors import ProxyAuthRequired, ServiceUnavailable, TooManyRequests


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class ParseBasicTests:
    @pytest.mark.parametrize(
        ("header", "message"),
        [
            (None, "proxy authentication required"),
            ("Bearer abc", "only Basic"),
            ("Basic", "empty Basic credentials"),
            ("Basic !!!notbase64", "not base64"),
            ("Basic " + b64("nocolon"), "no ':'"),
            ("Basic " + b64(":secret"), "empty proxy login"),
            ("Basic " + b64("login:"), "empty proxy login or secret"),
            ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "not base64"),
        ],
    )
    def test_malformed_headers_raise_407_naming_the_problem(self, header, message) -> None:
        with pytest.raises(ProxyAuthRequired, match=message):
            parse_basic(header)

    def test_secret_may_contain_colons(self) -> None:
        assert parse_basic("Basic " + b64("me:a:b:c")) == ("me", "a:b:c")


class AuthCacheTests:
    def _auth(self, lookups: list) -> Authenticator:
        good = Principal(user_id=7, login="me", credential_id=1)

        def lookup(login: str, secret: str) -> Principal | None:
            lookups.append((login, secret))
            return good if (login, secret) == ("me", "right") else None

        return Authenticator(
            cache=AuthCache(key=b"k", ttl=60),
            throttle=FailureThrottle(limit=3, window=60),
            lookup=lookup,
        )

    def test_wrong_secret_after_cached_success_is_rejected(self) -> None:
        lookups: list = []
        auth = self._auth(lookups)
        assert auth.authenticate(basic("me", "right"), "1.1.1.1").user_id == 7
        assert auth.authenticate(basic("me", "right"), "1.1.1.1").user_id == 7
        assert len(lookups) == 1  # second success came from the cache
        with pytest.raises(ProxyAuthRequired):
            auth.authenticate(basic("me", "wrong"), "1.1.1.1")
        assert lookups[-1] == ("me", "wrong")

    def test_cache_key_depends_on_secret_not_login_alone(self) -> None:
        cache = AuthCache(key=b"k", ttl=60)
        assert cache.cache_key("me", "a") != cache.cache_key("me", "b")
        assert cache.cache_key("me", "a") != AuthCache(key=b"other", ttl=60).cache_key("me", "a")

    def test_entries_expire_and_can_be_invalidated(self) -> None:
        cache = AuthCache(key=b"k", ttl=10)
        p = Principal(user_id=7, login="me", credential_id=1)
        key = cache.cache_key("me", "s")
        cache.put(key, p, now=100.0)
        assert cache.get(key, now=105.0) == p
        assert cache.get(key, now=111.0) is None
        cache.put(key, p, now=100.0)
        assert cache.invalidate(login="me") == 1
        assert cache.get(key, now=101.0) is None

    def test_failures_are_throttled_per_ip(self) -> None:
        lookups: list = []
        auth = self._auth(lookups)
        for _ in range(3):
            with pytest.raises(ProxyAuthRequired):
                auth.authenticate(basic("me", "wrong"), "9.9.9.9")
        with pytest.raises(TooManyRequests):
            auth.authenticate(basic("me", "right"), "9.9.9.9")
        assert len(lookups) == 3  # the throttled attempt never reached the DB
        assert auth.authenticate(basic("me", "right"), "8.8.8.8").user_id == 7

    def test_credential_store_failure_is_503_not_a_silent_close(self) -> None:
        def broken(login: str, secret: str) -> Principal | None:
            raise RuntimeError("database is locked")

        auth = Authenticator(
            cache=AuthCache(key=b"k", ttl=60),
            throttle=FailureThrottle(limit=3, window=60),
            lookup=broken,
        )
        with pytest.raises(ServiceUnavailable, match="credential store unavailable") as info:
            auth.authenticate(basic("me", "right"), "1.1.1.1")
        assert info.value.response(keep_alive=True).startswith(b"HTTP/1.1 503 ")

    def test_throttle_window_slides(self) -> None:
        t = FailureThrottle(limit=2, window=10)
        t.record("ip", now=0.0)
        t.record("ip", now=1.0)
        with pytest.raises(TooManyRequests):
            t.check("ip", now=5.0)
        t.check("ip", now=10.5)  # the first failure left the window


class FailureThrottleTests:
    def test_others_failures_do_not_lock_a_login_out_of_a_shared_address(self) -> None:
        lookups: list = []
        good = Principal(user_id=7, login="me", credential_id=1)

        def lookup(login: str, secret: str) -> Principal | None:
            lookups.append(login)
            return good if secret == "s" else None

        auth = Authenticator(
            cache=AuthCache(key=b"k", ttl=60),
            throttle=FailureThrottle(limit=3, window=60),
            lookup=lookup,
        )
        for _ in range(3):
            with pytest.raises(ProxyAuthRequired):
                auth.authenticate(basic("neighbour", "guess"), "10.0.0.1")
        with pytest.raises(TooManyRequests, match=re.escape("for this login from 10.0.0.1")):
            auth.authenticate(basic("neighbour", "guess"), "10.0.0.1")
        assert auth.authenticate(basic("me", "s"), "10.0.0.1").user_id == 7
        assert lookups == ["neighbour"] * 3 + ["me"]

    def test_one_address_trying_many_logins_meets_the_ceiling(self) -> None:
        t = FailureThrottle(limit=3, window=60)
        assert t.ip_limit == 3 * IP_CEILING_FACTOR
        for i in range(t.ip_limit):
            t.acquire("10.0.0.2", f"login-{i}", now=1.0)
            t.settle("10.0.0.2", f"login-{i}", failed=True, now=1.0)
        with pytest.raises(
            TooManyRequests, match=re.escape("from 10.0.0.2; retry in 60 s")
        ) as info:
            t.acquire("10.0.0.2", "fresh-login", now=1.0)
        assert info.value.retry_after == 60
        t.acquire("10.0.0.3", "fresh-login", now=1.0)  # other addresses are not affected

    def test_attempts_in_flight_count_before_they_fail(self) -> None:
        t = FailureThrottle(limit=3, window=60, ip_limit=100)
        for _ in range(3):
            t.acquire("10.0.0.4", "me", now=0.0)
        assert t.in_flight("10.0.0.4", "me") == 3
        with pytest.raises(TooManyRequests):
            t.acquire("10.0.0.4", "me", now=0.0)
        # Successes give their slots back; nothing stays behind for them.
        for _ in range(3):
            t.settle("10.0.0.4", "me", failed=False, now=0.0)
        assert t.in_flight("10.0.0.4") == 0
        assert len(t) == 0
        t.acquire("10.0.0.4", "me", now=0.0)

    def test_refused_attempts_do_not_extend_the_lock_out(self) -> None:
        t = FailureThrottle(limit=1, window=10)
        t.acquire("ip", "me", now=0.0)
        t.settle("ip", "me", failed=True, now=0.0)
        for now in (1.0, 5.0, 9.0):
            with pytest.raises(TooManyRequests):
                t.acquire("ip", "me", now=now)
        t.acquire("ip", "me", now=10.5)

    def test_a_lookup_that_dies_gives_its_slot_back(self) -> None:
        class Killed(BaseException):  # like GreenletExit: not an Exception
            pass

        def lookup(login: str, secret: str) -> Principal | None:
            raise Killed

        throttle = FailureThrottle(limit=1, window=60)
        auth = Authenticator(cache=AuthCache(key=b"k", ttl=60), throttle=throttle, lookup=lookup)
        for _ in range(3):
            with pytest.raises(Killed):
                auth.authenticate(basic("me", "s"), "ip")
        assert throttle.in_flight("ip") == 0

    def test_a_store_outage_is_not_counted_as_failed_logins(self) -> None:
        def broken(login: str, secret: str) -> Principal | None:
            raise RuntimeError("database is locked")

        throttle = FailureThrottle(limit=1, window=60)
        auth = Authenticator(cache=AuthCache(key=b"k", ttl=60), throttle=throttle, lookup=broken)
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                auth.authenticate(basic("me", "s"), "ip")

    def test_a_cached_success_never_consults_the_throttle(self) -> None:
        good = Principal(user_id=7, login="me", credential_id=1)
        throttle = FailureThrottle(limit=1, window=60)
        auth = Authenticator(
            cache=AuthCache(key=b"k", ttl=60), throttle=throttle, lookup=lambda *_: good
        )
        assert auth.authenticate(basic("me", "s"), "ip").user_id == 7
        # The address is locked out now (its ceiling taken by others' failures)...
        for i in range(throttle.ip_limit):
            throttle.record("ip", f"other-{i}")
        with pytest.raises(TooManyRequests):
            throttle.check("ip", "me")
        # ...yet the credential checked before keeps working, with and without the memo.
        memo = AuthMemo()
        assert auth.authenticate(basic("me", "s"), "ip", memo).user_id == 7
        assert auth.authenticate(basic("me", "s"), "ip", memo).user_id == 7

    def test_memory_is_bounded(self) -> None:
        t = FailureThrottle(limit=5, window=60, max_keys=100)
        for i in range(1_000):
            t.record(f"10.1.{i // 256}.{i % 256}", "x", now=0.0)
        assert len(t) <= 100
        t.acquire("10.9.9.9", "y" * 10_000, now=0.0)  # a huge login is keyed by its start
        t.settle("10.9.9.9", "y" * 10_000, failed=True, now=0.0)
        assert max(len(k[1] or "") for k in t._tallies) == KEY_LOGIN_CHARS


@E2E
class ProxyAuthTests:
    def _status(self, proxy, origin, header: str | None) -> tuple[int, str | None, bytes]:
        c = RawClient(proxy.port)
        extra = f"Proxy-Authorization: {header}\r\n" if header is not None else ""
        c.send(f"GET {origin.url('/hello')} HTTP/1.1\r\n{extra}\r\n".encode())
        r = c.response()
        c.close()
        return r.status, r.header("Proxy-Authenticate"), r.body

    def test_every_failure_is_407_with_challenge_and_body(self, proxy, proxy_users, origin) -> None:
        alice = proxy_users["px-alice"]
        cases = {
            "missing": None,
            "not basic": "Digest abc",
            "bad base64": "Basic %%%",
            "no colon": "Basic " + b64("px-alice"),
            "unknown login": basic("px-nobody", "whatever"),
            "wrong secret": basic(alice.login, alice.secret + "x"),
            "revoked": basic("px-revoked", proxy_users["px-revoked"].secret),
            "inactive user": basic("px-inactive", proxy_users["px-inactive"].secret),
        }
        for label, header in cases.items():
            status, challenge, body = self._status(proxy, origin, header)
            assert status == 407, label
            assert challenge == 'Basic realm="goproxy"', label
            assert body.strip(), label

    def test_web_password_is_not_a_proxy_secret(self, proxy, proxy_users, origin) -> None:
        def set_password() -> None:
            user = User.objects.get(username="px-bob")
            user.set_password("web-password-123")
            user.save()

        committed(set_password)
        assert self._status(proxy, origin, basic("px-bob", "web-password-123"))[0] == 407
        bob = proxy_users["px-bob"]
        assert self._status(proxy, origin, basic(bob.login, bob.secret))[0] == 200

    def test_wrong_secret_after_cached_success_is_407(self, proxy, proxy_users, origin) -> None:
        alice = proxy_users["px-alice"]
        assert self._status(proxy, origin, basic(alice.login, alice.secret))[0] == 200
        assert self._status(proxy, origin, basic(alice.login, "guess"))[0] == 407
        assert self._status(proxy, origin, basic(alice.login, alice.secret[:-1]))[0] == 407

    def test_each_keep_alive_request_is_authorised(self, proxy, proxy_users, origin) -> None:
        alice = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        for header, status in [
            (basic(alice.login, alice.secret), 200),
            (basic(alice.login, "wrong"), 407),
            (basic(alice.login, alice.secret), 200),
        ]:
            url = origin.url("/hello")
            c.send(f"GET {url} HTTP/1.1\r\nProxy-Authorization: {header}\r\n\r\n".encode())
            r = c.response()
            assert r.status == status
            assert r.header("Connection") == "keep-alive"
        c.close()

    def test_use_is_recorded_on_the_credential(self, proxy, proxy_users, origin) -> None:
        carol = proxy_users["px-used"]
        assert self._status(proxy, origin, basic(carol.login, carol.secret))[0] == 200
        used = committed(lambda: ProxyCredential.objects.get(login=carol.login).last_used_at)
        assert used is not None

    def test_revocation_takes_effect_within_cache_ttl(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-revoke-later"]
        assert self._status(proxy, origin, basic(u.login, u.secret))[0] == 200
        committed(lambda: credential_revoke(credential=ProxyCredential.objects.get(login=u.login)))
        # The daemon runs with PROXY_AUTH_CACHE_TTL=1: refused well within the 5 s bound.
        assert wait_for(lambda: self._status(proxy, origin, basic(u.login, u.secret))[0] == 407, 5)


@E2E
class ProductionThrottleTests:
    def test_failed_logins_are_throttled_per_ip(self, strict_proxy, proxy_users) -> None:
        wrong = ProxyUser(proxy_users["px-alice"].user_id, "px-alice", "bad")
        statuses = [proxied_get(strict_proxy, wrong, "http://a/").response().status for _ in "1234"]
        # settings_strict allows 3 failures per window; the 4th attempt is refused.
        assert statuses == [407, 407, 407, 429]


def _status_line(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def _concurrent_statuses(proxy, url: str, headers: list[str], source_ip: str) -> list[int]:
    """Open one connection per header first, then send every request at once, then read
    every status: the attempts are in flight together, as from many clients behind one
    address (`source_ip`, an address of the loopback range)."""
    socks = [
        socket.create_connection(
            ("127.0.0.1", proxy.port), timeout=20, source_address=(source_ip, 0)
        )
        for _ in headers
    ]
    try:
        for sock, header in zip(socks, headers, strict=True):
            sock.sendall(f"GET {url} HTTP/1.1\r\nProxy-Authorization: {header}\r\n\r\n".encode())
        return [_status_line(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture(scope="module")
def throttled_proxy(proxy_users, tmp_path_factory):
    """A daemon with the production throttle: 20 failures per (IP, login) and minute."""
    proc = ProxyProcess(
        tmp_path_factory.mktemp("throttle"),
        {"PROXY_AUTH_FAIL_LIMIT": "20", "PROXY_AUTH_FAIL_WINDOW": "60"},
        "goproxy_site.settings.test",
    ).start()
    yield proc
    proc.stop()


@E2E
class ConcurrentLoginThrottleTests:
    def test_300_concurrent_wrong_logins_cannot_pass_the_limit_nor_lock_out_a_valid_user(
        self, throttled_proxy, proxy_users, origin
    ) -> None:
        alice, bob = proxy_users["px-alice"], proxy_users["px-bob"]
        wrong = basic(alice.login, alice.secret + "x")
        statuses = _concurrent_statuses(
            throttled_proxy, origin.url("/hello"), [wrong] * 300, "127.0.0.21"
        )
        counts = Counter(statuses)
        # Only 20 attempts ever reach the credential store; the rest are refused unread.
        assert counts[407] == 20, counts
        assert counts[429] == 280, counts
        # bob is behind the same address and has not used the proxy yet (no cache entry).
        url = origin.url("/hello")
        assert _concurrent_statuses(throttled_proxy, url, [basic(*bob.auth)], "127.0.0.21") == [200]
        # alice herself, with her right secret, waits out the window like the guesser.
        assert _concurrent_statuses(throttled_proxy, url, [basic(*alice.auth)], "127.0.0.21") == [
            429
        ]
        assert _concurrent_statuses(throttled_proxy, url, [basic(*alice.auth)], "127.0.0.22") == [
            200
        ]

    def test_an_address_guessing_many_logins_meets_the_ceiling_but_known_clients_go_on(
        self, throttled_proxy, proxy_users, origin
    ) -> None:
        used = proxy_users["px-used"]
        url = origin.url("/hello")
        # A client that authenticated before the flood is served from the cache throughout.
        assert _concurrent_statuses(throttled_proxy, url, [basic(*used.auth)], "127.0.0.23") == [
            200
        ]
        guesses = [basic(f"px-guess-{i}", "nope") for i in range(300)]
        counts = Counter(_concurrent_statuses(throttled_proxy, url, guesses, "127.0.0.23"))
        assert counts[407] == 20 * IP_CEILING_FACTOR, counts
        assert counts[429] == 300 - 20 * IP_CEILING_FACTOR, counts
        assert _concurrent_statuses(throttled_proxy, url, [basic(*used.auth)], "127.0.0.23") == [
            200
        ]
