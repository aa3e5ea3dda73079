"""Proxy-Authorization: Basic parsing and credential checks with a success cache.

Successes are cached under a keyed BLAKE2b MAC of login + NUL + secret (the key derived
from SECRET_KEY), i.e. under the *supplied* credentials, so a wrong secret never hits a
cached success (a cache keyed by the login alone would accept any secret for as long as
the entry lives).
Failures are never cached but are counted per client IP; past the limit the IP gets 429
without a DB lookup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import cython

from .errors import ProxyAuthRequired, ServiceUnavailable, TooManyRequests

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    login: str
    credential_id: int


@cython.cclass
class AuthMemo:
    """A connection's previous Proxy-Authorization value and its auth-cache key."""

    header: str | None = cython.declare(object, visibility="public")
    key: bytes = cython.declare(object, visibility="public")

    def __init__(self) -> None:
        self.header = None
        self.key = b""


# (login, secret) -> Principal or None: store.credential_lookup, run off the gevent hub.
Lookup = Callable[[str, str], "Principal | None"]


def parse_basic(header: str | None) -> tuple[str, str]:
    """login, secret from a Proxy-Authorization value; ProxyAuthRequired saying what is wrong."""
    if header is None:
        raise ProxyAuthRequired("proxy authentication required")
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise ProxyAuthRequired("only Basic proxy authentication is supported")
    param = param.strip()
    if not param:
        raise ProxyAuthRequired("empty Basic credentials")
    try:
        decoded = base64.b64decode(param.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise ProxyAuthRequired(
            "malformed Basic credentials (not base64 of login:secret)"
        ) from None
    login, colon, secret = decoded.partition(":")
    if not colon:
        raise ProxyAuthRequired("malformed Basic credentials (no ':' between login and secret)")
    if not login or not secret:
        raise ProxyAuthRequired("empty proxy login or secret")
    return login, secret


class FailureThrottle:
    """At most `limit` failed attempts per client IP in a sliding `window` of seconds."""

    def __init__(self, *, limit: int, window: float, max_ips: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_ips = max_ips
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, ip: str, now: float) -> deque[float] | None:
        q = self._failures.get(ip)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[ip]
            return None
        return q

    def check(self, ip: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        q = self._recent(ip, now)
        if q is not None and len(q) >= self.limit:
            retry = max(1, int(q[0] + self.window - now) + 1)
            raise TooManyRequests(
                f"too many failed proxy logins from {ip}; retry in {retry} s", retry_after=retry
            )

    def record(self, ip: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        q = self._recent(ip, now)
        if q is None:
            if len(self._failures) >= self.max_ips:
                # Bounded memory under a distributed flood: forget the oldest IP.
                self._failures.pop(next(iter(self._failures)))
            q = self._failures[ip] = deque(maxlen=self.limit)
        q.append(now)


class AuthCache:
    """Successful credential checks, keyed by a MAC of the supplied login and secret.

    The MAC is keyed BLAKE2b (hashlib's built-in): a new connection computes one, and
    HMAC-SHA256 through OpenSSL cost several times as much per call.
    """

    def __init__(self, *, key: bytes, ttl: float) -> None:
        self._key = hashlib.blake2b(key, person=b"goproxy-authkey").digest()  # 64 bytes
        self.ttl = ttl
        self._entries: dict[bytes, tuple[Principal, float]] = {}

    def cache_key(self, login: str, secret: str) -> bytes:
        return hashlib.blake2b(f"{login}\0{secret}".encode(), key=self._key).digest()

    def get(self, key: bytes, *, now: float | None = None) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = time.monotonic() if now is None else now
        if entry[1] <= now:
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: bytes, principal: Principal, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._entries) > 100_000:
            self.purge(now=now)
        self._entries[key] = (principal, now + self.ttl)

    def purge(self, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._entries = {k: v for k, v in self._entries.items() if v[1] > now}

    def invalidate(self, *, user_id: int | None = None, login: str | None = None) -> int:
        doomed = [
            k
            for k, (p, _exp) in self._entries.items()
            if (user_id is not None and p.user_id == user_id)
            or (login is not None and p.login == login)
        ]
        for k in doomed:
            del self._entries[k]
        return len(doomed)


class Authenticator:
    """Authorise one request: throttle check, cache, then the (pooled) DB lookup."""

    def __init__(self, *, cache: AuthCache, throttle: FailureThrottle, lookup: Lookup) -> None:
        self.cache = cache
        self.throttle = throttle
        self.lookup = lookup

    def authenticate(
        self, header: str | None, client_ip: str, memo: AuthMemo | None = None
    ) -> Principal:
        """The principal for a Proxy-Authorization value, checked on every call.

        `memo` is the connection's previous header and cache key: when a keep-alive client
        repeats the exact header, the base64 decoding and MAC are skipped, but the
        cache entry is still looked up, so revocation and expiry apply to every request.
        """
        if header is None:
            # Clients probe without credentials first; that is not a failed attempt.
            raise ProxyAuthRequired("proxy authentication required")
        if memo is not None and memo.header == header:
            principal = self.cache.get(memo.key)
            if principal is not None:
                return principal
        principal, key = self._authenticate(header, client_ip)
        if memo is not None:
            memo.header, memo.key = header, key
        return principal

    def _authenticate(self, header: str, client_ip: str) -> tuple[Principal, bytes]:
        """The principal and its cache key (decoded and hashed once)."""
        try:
            login, secret = parse_basic(header)
        except ProxyAuthRequired:
            self.throttle.check(client_ip)
            self.throttle.record(client_ip)
            raise
        key = self.cache.cache_key(login, secret)
        principal = self.cache.get(key)
        if principal is not None:
            return principal, key
        self.throttle.check(client_ip)
        try:
            principal = self.lookup(login, secret)
        except Exception as exc:
            logger.exception("credential lookup failed")
            raise ServiceUnavailable(
                "proxy credential store unavailable, retry shortly", keep_alive=True
            ) from exc
        if principal is None:
            self.throttle.record(client_ip)
            raise ProxyAuthRequired("invalid proxy credentials")
        self.cache.put(key, principal)
        return principal, key
