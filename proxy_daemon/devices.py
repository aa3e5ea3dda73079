"""Device limit: at most N distinct client IPs per user in use at once, across all proxies.

"In use" means seen within the last PLANS_DEVICE_WINDOW_SECONDS. The state is one Redis
sorted set per user (member = client IP, score = last seen), shared by every proxy
instance, updated by one Lua script so check-and-add is atomic. The limit itself comes
with the user's other plan limits (limits.UserLimits). Only new client connections are
checked, and an admitted (user, IP) is trusted locally for PLANS_DEVICE_CACHE_SECONDS,
so a busy user costs a Redis round trip at most every few seconds per address. With
Redis unreachable the check fails open (logged): the device limit is an anti-sharing
rule, not a security boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis import Redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "goproxy:devices:"

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
    """The device limit check of new client connections, shared through one Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        window: float,
        cache_seconds: float,
        prefix: str = KEY_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.window = window
        self.cache_seconds = cache_seconds
        self.prefix = prefix
        self.clock = clock
        self._script = redis.register_script(ADMIT_SCRIPT)
        self._admitted: dict[tuple[int, str], float] = {}

    def admit(self, user_id: int, ip: str, limit: int) -> bool:
        """Whether a new connection of user_id from ip stays within `limit` addresses."""
        key = (user_id, ip)
        now = time.monotonic()
        if self._admitted.get(key, 0.0) > now:
            return True
        try:
            ok = self._script(
                keys=[f"{self.prefix}{user_id}"], args=[self.clock(), self.window, limit, ip]
            )
        except Exception as exc:  # redis.RedisError, OSError: fail open, loudly
            logger.warning("device limit check for user %s skipped: %s", user_id, exc)
            return True
        if not ok:
            return False
        if len(self._admitted) > 100_000:
            self._admitted = {k: t for k, t in self._admitted.items() if t > now}
        self._admitted[key] = now + self.cache_seconds
        return True
