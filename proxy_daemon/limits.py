"""Per-user limits: token-bucket speed limits, concurrent-connection counts, cached plan limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

LOAD_RETRY_SECONDS = 5.0
# A bucket holds at most this many seconds of traffic, so an idle user can burst briefly.
BURST_SECONDS = 1.0
MIN_BURST = 16 * 1024


class TokenBucket:
    """Bytes per second with a one-second burst; `consume` returns how long to wait."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, *, now: float | None = None) -> None:
        self.rate = float(rate)
        self.burst = max(rate * BURST_SECONDS, MIN_BURST)
        self.tokens = self.burst
        self.last = time.monotonic() if now is None else now

    def set_rate(self, rate: float) -> None:
        self.rate = float(rate)
        self.burst = max(rate * BURST_SECONDS, MIN_BURST)
        self.tokens = min(self.tokens, self.burst)

    def consume(self, n: int, *, now: float | None = None) -> float:
        """Take n bytes (going into debt if needed); seconds to sleep before the next read."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    @property
    def max_read(self) -> int:
        return int(self.burst)


# A user's (upload, download) buckets, shared by all the user's connections.
Buckets = tuple[TokenBucket, TokenBucket]


@dataclass(frozen=True, slots=True)
class UserLimits:
    """A user's plan limits; None means unlimited."""

    max_connections: int | None = None  # concurrent client connections
    speed_bps: int | None = None  # each direction
    device_limit: int | None = None  # distinct client IP addresses in use at once


UNLIMITED = UserLimits()


class UserLimitsCache:
    """A user's plan limits, loaded through `loader(user_id)` and kept for `ttl` seconds."""

    def __init__(self, loader: Callable[[int], UserLimits], *, ttl: float) -> None:
        self.loader = loader
        self.ttl = ttl
        self._entries: dict[int, tuple[UserLimits, float]] = {}

    def get(self, user_id: int) -> UserLimits:
        entry = self._entries.get(user_id)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            return entry[0]
        try:
            limits = self.loader(user_id)
            expires = now + self.ttl
        except Exception:
            # Plan limits are a quality-of-service control; with the plans DB down the
            # user keeps the last known limits (or none) and the lookup is retried soon.
            logger.exception("loading plan limits of user %s failed", user_id)
            limits = entry[0] if entry is not None else UNLIMITED
            expires = now + min(self.ttl, LOAD_RETRY_SECONDS)
        self._entries[user_id] = (limits, expires)
        return limits

    def invalidate(self, user_id: int) -> None:
        self._entries.pop(user_id, None)


class SpeedLimiter:
    """One upload and one download bucket per user, shared by all the user's connections."""

    def __init__(self) -> None:
        self._buckets: dict[int, Buckets] = {}

    def buckets(self, user_id: int, rate: int | None) -> Buckets | None:
        if rate is None:
            self._buckets.pop(user_id, None)
            return None
        pair = self._buckets.get(user_id)
        if pair is None:
            pair = self._buckets[user_id] = (TokenBucket(rate), TokenBucket(rate))
        elif pair[0].rate != rate:
            pair[0].set_rate(rate)
            pair[1].set_rate(rate)
        return pair


class ConnectionCounter:
    """Open client connections per user."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def acquire(self, user_id: int, limit: int | None) -> bool:
        current = self.counts.get(user_id, 0)
        if limit is not None and current >= limit:
            return False
        self.counts[user_id] = current + 1
        return True

    def release(self, user_id: int) -> None:
        current = self.counts.get(user_id, 0) - 1
        if current > 0:
            self.counts[user_id] = current
        else:
            self.counts.pop(user_id, None)
