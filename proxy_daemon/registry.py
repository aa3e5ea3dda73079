"""The open client connections by user, and the live controls applied to them.

`ConnectionRegistry` is the proxy's `hooks.ProxyControl`: control plugins restrict, lift
and throttle users through it, and drop cached credentials and plan limits. A
restriction cuts the user's open connections at once and is checked on every request;
a throttle changes the speed buckets of open connections and tunnels in place (nothing
is cut). The server registers each connection here and claims a per-user slot for it
when a user is admitted on it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .auth import AuthCache
from .limits import Buckets, ConnectionCounter, SpeedLimiter, UserLimitsCache
from .metrics import ProxyMetrics

logger = logging.getLogger(__name__)

# Rate given to buckets still held by open connections when a throttle ends on an
# otherwise unlimited plan (effectively no limit).
UNTHROTTLED_BPS = 1 << 40


class Connection(Protocol):
    """What the registry needs of a client connection (server.ClientConnection)."""

    user_id: int | None  # the user holding this connection's slot
    buckets: Buckets | None
    idle: bool  # between requests (a drain closes it at once)

    def cut(self, reason: str) -> None: ...

    def set_buckets(self, buckets: Buckets | None) -> None: ...


class ConnectionRegistry:
    """Connections by user, restrictions, throttles and cuts (hooks.ProxyControl)."""

    def __init__(
        self,
        *,
        limits: UserLimitsCache,
        credentials: AuthCache,
        metrics: ProxyMetrics,
    ) -> None:
        self.limits = limits
        self.credentials = credentials
        self.metrics = metrics
        self.connections: set[Connection] = set()  # every open client connection
        self.by_user: dict[int, set[Connection]] = {}  # those holding a user's slot
        self.counter = ConnectionCounter()
        self.speed = SpeedLimiter()
        self._restricted: dict[int, str] = {}
        self._throttled: dict[int, int] = {}  # user_id -> B/s while over a throttling quota

    # ProxyControl -------------------------------------------------------------------
    def restrict(self, user_id: int, reason: str) -> None:
        self._restricted[user_id] = reason
        self.metrics.restriction_cuts += self.cut_user(user_id, f"user restricted: {reason}")

    def lift(self, user_id: int) -> None:
        self._restricted.pop(user_id, None)

    def restricted(self) -> dict[int, str]:
        return dict(self._restricted)

    def invalidate_credentials(
        self, *, user_id: int | None = None, login: str | None = None
    ) -> None:
        self.credentials.invalidate(user_id=user_id, login=login)

    def refresh_user_limits(self, user_id: int) -> None:
        self.limits.invalidate(user_id)

    def throttle(self, user_id: int, speed_bps: int | None) -> None:
        """Hold a user to speed_bps (None: back to the plan's speed) on open and new
        connections: HTTP connections pick up the shared buckets at their next send, open
        tunnels at their next chunk (nothing is cut)."""
        if speed_bps is None:
            if self._throttled.pop(user_id, None) is None:
                return
            rate = self.limits.get(user_id).speed_bps
        else:
            self._throttled[user_id] = speed_bps
            rate = self._speed_for(user_id, self.limits.get(user_id).speed_bps)
        pair = self.speed.buckets(user_id, rate)
        conns = list(self.by_user.get(user_id, ()))
        if pair is None:
            # Unlimited again: connections still holding the old pair stop waiting.
            for conn in conns:
                if conn.buckets is not None:
                    conn.buckets[0].set_rate(UNTHROTTLED_BPS)
                    conn.buckets[1].set_rate(UNTHROTTLED_BPS)
        for conn in conns:
            conn.set_buckets(pair)

    # Connections --------------------------------------------------------------------
    def add(self, conn: Connection) -> None:
        self.connections.add(conn)

    def remove(self, conn: Connection) -> None:
        """A connection closed: it leaves the registry and gives up its slot."""
        self.connections.discard(conn)
        self.release(conn)

    def claim(self, conn: Connection, user_id: int, max_connections: int | None) -> bool:
        """Move conn's slot to user_id; False (and no slot) when that user already holds
        max_connections."""
        self.release(conn)
        if not self.counter.acquire(user_id, max_connections):
            return False
        conn.user_id = user_id
        self.by_user.setdefault(user_id, set()).add(conn)
        return True

    def release(self, conn: Connection) -> None:
        uid = conn.user_id
        if uid is None:
            return
        self.counter.release(uid)
        users = self.by_user.get(uid)
        if users is not None:
            users.discard(conn)
            if not users:
                del self.by_user[uid]
        conn.user_id = None

    def restriction(self, user_id: int) -> str | None:
        """Why the user is restricted, or None."""
        return self._restricted.get(user_id)

    def buckets(self, user_id: int, plan_speed: int | None) -> Buckets | None:
        """The user's shared speed buckets: the plan's speed, or the throttle's if lower."""
        return self.speed.buckets(user_id, self._speed_for(user_id, plan_speed))

    def _speed_for(self, user_id: int, plan_speed: int | None) -> int | None:
        throttled = self._throttled.get(user_id)
        if throttled is None:
            return plan_speed
        return throttled if plan_speed is None else min(plan_speed, throttled)

    def cut_user(self, user_id: int, reason: str = "cut by operator") -> int:
        """Close every open connection of a user; returns how many."""
        conns = list(self.by_user.get(user_id, ()))
        for conn in conns:
            conn.cut(reason)
        if conns:
            logger.info("cut %d connection(s) of user %s: %s", len(conns), user_id, reason)
        return len(conns)
