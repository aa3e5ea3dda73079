"""Proxy authentication: Basic parsing, the success cache, throttling, and every 407 case."""

from __future__ import annotations

import base64

import pytest

from accounts.models import ProxyCredential, User
from accounts.services import credential_revoke
from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import (
    E2E,
    ProxyUser,
    RawClient,
    basic,
    committed,
    proxied_get,
)
from proxy_daemon.auth import AuthCache, Authenticator, FailureThrottle, Principal, parse_basic
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
