"""Proxy-Authorization: Basic parsing and credential checks with a success cache.

Successes are cached under a keyed BLAKE2b MAC of login + NUL + secret (the key derived
from SECRET_KEY), i.e. under the *supplied* credentials, so a wrong secret never hits a
cached success (a cache keyed by the login alone would accept any secret for as long as
the entry lives).
Failures are never cached but are counted per (client IP, login) and per client IP
(`FailureThrottle`); past a limit the attempt gets 429 without a DB lookup. A cached
success never touches the throttle.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import time
from collections import OrderedDict
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


# The per-IP ceiling, as a multiple of the per-(IP, login) limit: enough for the few
# clients with a typo behind one NAT, low enough to stop one address trying many logins.
IP_CEILING_FACTOR = 5
# Logins longer than this cannot be issued; keys keep only this much of one.
KEY_LOGIN_CHARS = 64


class _Tally:
    """One key's failures within the window (oldest first) plus its attempts in flight.

    A plain list: it never holds more than the key's limit, and an empty one costs a
    fraction of a deque.
    """

    __slots__ = ("failures", "pending")

    def __init__(self) -> None:
        self.failures: list[float] = []
        self.pending = 0

    def count(self, now: float, window: float) -> int:
        failures = self.failures
        if failures and failures[0] <= now - window:
            cutoff = now - window
            keep = 0
            while keep < len(failures) and failures[keep] <= cutoff:
                keep += 1
            del failures[:keep]
        return len(failures) + self.pending


class FailureThrottle:
    """Failed proxy logins in a sliding `window`: at most `limit` per (client IP, login)
    and `ip_limit` (default IP_CEILING_FACTOR x limit) per client IP.

    An attempt reserves a slot under both keys before its DB lookup (`acquire`) and
    settles it after (`settle`): a success gives the slot back, a failure keeps it for
    the window. Attempts in flight therefore count, so concurrent wrong logins cannot
    exceed a limit. Keying by (IP, login) means one client's wrong secrets do not lock
    out other people behind the same address; the per-IP ceiling still bounds an
    address that guesses many logins. Refused attempts are not failures (they never
    reached the DB), so a flood of them does not extend a lock-out.
    """

    def __init__(
        self, *, limit: int, window: float, ip_limit: int | None = None, max_keys: int = 200_000
    ) -> None:
        self.limit = limit
        self.ip_limit = limit * IP_CEILING_FACTOR if ip_limit is None else ip_limit
        self.window = window
        self.max_keys = max_keys
        # (ip, login) -> that login's tally from that address; (ip, None) -> the address's.
        # Only keys with a failure in the window or an attempt in flight are kept.
        self._tallies: OrderedDict[tuple[str, str | None], _Tally] = OrderedDict()

    def _keys(self, ip: str, login: str) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
        return (ip, login[:KEY_LOGIN_CHARS]), (ip, None)

    def _tally(self, key: tuple[str, str | None]) -> _Tally:
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= self.max_keys:
                # Bounded memory under a distributed flood: forget the oldest key.
                self._tallies.popitem(last=False)
            tally = self._tallies[key] = _Tally()
        return tally

    def _refuse(self, tally: _Tally, now: float, what: str) -> TooManyRequests:
        oldest = tally.failures[0] if tally.failures else now
        retry = max(1, math.ceil(oldest + self.window - now))
        return TooManyRequests(
            f"too many failed proxy logins {what}; retry in {retry} s", retry_after=retry
        )

    def acquire(self, ip: str, login: str, *, now: float | None = None) -> None:
        """Reserve a slot for one attempt, or raise TooManyRequests (nothing reserved)."""
        now = time.monotonic() if now is None else now
        login_key, ip_key = self._keys(ip, login)
        by_login, by_ip = self._tally(login_key), self._tally(ip_key)
        if by_login.count(now, self.window) >= self.limit:
            raise self._refuse(by_login, now, f"for this login from {ip}")
        if by_ip.count(now, self.window) >= self.ip_limit:
            if by_login.count(now, self.window) == 0:
                del self._tallies[login_key]
            raise self._refuse(by_ip, now, f"from {ip}")
        by_login.pending += 1
        by_ip.pending += 1

    def settle(self, ip: str, login: str, *, failed: bool, now: float | None = None) -> None:
        """End an acquired attempt: a failure stays counted for the window."""
        now = time.monotonic() if now is None else now
        for key in self._keys(ip, login):
            tally = self._tallies.get(key)
            if tally is None:  # evicted meanwhile
                continue
            tally.pending = max(0, tally.pending - 1)
            if failed:
                tally.failures.append(now)
            elif tally.count(now, self.window) == 0:
                del self._tallies[key]

    def check(self, ip: str, login: str = "", *, now: float | None = None) -> None:
        """Raise TooManyRequests if an attempt would be refused now (reserves nothing)."""
        self.acquire(ip, login, now=now)
        self.settle(ip, login, failed=False, now=now)

    def record(self, ip: str, login: str = "", *, now: float | None = None) -> None:
        """Count one failed attempt that was never acquired (a malformed header)."""
        now = time.monotonic() if now is None else now
        for key in self._keys(ip, login):
            self._tally(key).failures.append(now)

    def in_flight(self, ip: str, login: str | None = None) -> int:
        """Attempts from `ip` (for `login`, when given) whose lookup is running."""
        key = (ip, None if login is None else login[:KEY_LOGIN_CHARS])
        tally = self._tallies.get(key)
        return tally.pending if tally else 0

    def __len__(self) -> int:
        """Keys held: each has a failure in the window or an attempt in flight (or had
        one, until it is next looked at)."""
        return len(self._tallies)


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
        # The slot is held while the lookup runs, so concurrent attempts see it.
        self.throttle.acquire(client_ip, login)
        failed = False
        try:
            principal = self.lookup(login, secret)
            failed = principal is None
        except Exception as exc:
            logger.exception("credential lookup failed")
            raise ServiceUnavailable(
                "proxy credential store unavailable, retry shortly", keep_alive=True
            ) from exc
        finally:
            # Also on GreenletExit: a killed greenlet must not hold its slot for ever.
            self.throttle.settle(client_ip, login, failed=failed)
        if principal is None:
            raise ProxyAuthRequired("invalid proxy credentials")
        self.cache.put(key, principal)
        return principal, key
