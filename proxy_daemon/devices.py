"""Device limit: at most N distinct client IPs per user in use at once, across all proxies.

"In use" means seen within the last PLANS_DEVICE_WINDOW_SECONDS. The state is one Redis
sorted set per user (member = client IP, score = last seen), shared by every proxy
instance, updated by one Lua script so check-and-add is atomic. Only new client
connections are checked, and an admitted (user, IP) is trusted locally for
PLANS_DEVICE_CACHE_SECONDS, so a busy user costs a Redis round trip at most every few
seconds per address. With Redis unreachable the check fails open (logged): the device
limit is an anti-sharing rule, not a security boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

KEY_PREFIX = "goproxy:devices:"
LIMIT_TTL = 30.0

# KEYS[1] = the user's set; ARGV = now, window, limit, ip. Returns 1 admitted, 0 refused.
ADMIT_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or
   redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
  return 1
end
return 0
"""


class DeviceGuard:
    def __init__(
        self,
        redis: Any,
        *,
        window: float,
        cache_seconds: float,
        limit_for: Callable[[int], int | None],
        prefix: str = KEY_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.window = window
        self.cache_seconds = cache_seconds
        self.limit_for = limit_for
        self.prefix = prefix
        self.clock = clock
        self._script = redis.register_script(ADMIT_SCRIPT)
        self._admitted: dict[tuple[int, str], float] = {}
        self._limits: dict[int, tuple[int | None, float]] = {}

    @classmethod
    def from_settings(cls, settings: Any, db_call: Callable[..., Any]) -> DeviceGuard | None:
        url = settings.PLANS_DEVICE_REDIS_URL
        if not url:
            return None
        import redis

        from plans.selectors import device_limit_for

        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        # Keys are per plans database, so deployments (and test runs) sharing a Redis
        # never see each other's users.
        db_name = str(settings.DATABASES["plans"]["NAME"])
        return cls(
            client,
            prefix=f"{KEY_PREFIX}{db_name}:",
            window=settings.PLANS_DEVICE_WINDOW_SECONDS,
            cache_seconds=settings.PLANS_DEVICE_CACHE_SECONDS,
            limit_for=lambda uid: db_call(device_limit_for, uid),
        )

    def limit(self, user_id: int) -> int | None:
        now = time.monotonic()
        entry = self._limits.get(user_id)
        if entry is not None and entry[1] > now:
            return entry[0]
        try:
            value = self.limit_for(user_id)
        except Exception:
            logger.exception("loading the device limit of user %s failed", user_id)
            value = entry[0] if entry is not None else None
        self._limits[user_id] = (value, now + LIMIT_TTL)
        return value

    def forget(self, user_id: int) -> None:
        """Drop the cached limit (the user's plan changed)."""
        self._limits.pop(user_id, None)

    def admit(self, user_id: int, ip: str) -> int | None:
        """None when the connection may proceed, else the limit it would exceed."""
        limit = self.limit(user_id)
        if limit is None:
            return None
        key = (user_id, ip)
        now = time.monotonic()
        if self._admitted.get(key, 0.0) > now:
            return None
        try:
            ok = self._script(
                keys=[f"{self.prefix}{user_id}"], args=[self.clock(), self.window, limit, ip]
            )
        except Exception as exc:  # redis.RedisError, OSError: fail open, loudly
            logger.warning("device limit check for user %s skipped: %s", user_id, exc)
            return None
        if not ok:
            return limit
        if len(self._admitted) > 100_000:
            self._admitted = {k: t for k, t in self._admitted.items() if t > now}
        self._admitted[key] = now + self.cache_seconds
        return None
