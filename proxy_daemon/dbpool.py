"""ORM access from the gevent process: a bounded pool of native threads.

Each greenlet would otherwise open its own DB connection, and SQLite calls block the hub.
The pool keeps the hub free; each call closes its connection afterwards unless
CONN_MAX_AGE keeps it (then at most one connection per pool thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.db import close_old_connections

T = TypeVar("T")


def _run(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


class DBRunner:
    def __init__(self, threads: int) -> None:
        from gevent.threadpool import ThreadPool

        self.pool = ThreadPool(threads)

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return self.pool.apply(_run, (fn, args))

    def close(self) -> None:
        self.pool.kill()


def plan_limits(user_id: int) -> Any:
    """UserLimits from the user's current subscription (unlimited without one)."""
    from plans.selectors import subscription_get_current

    from .limits import UNLIMITED, UserLimits

    sub = subscription_get_current(user_id=user_id)
    if sub is None:
        return UNLIMITED
    return UserLimits(max_connections=sub.plan.max_connections, speed_bps=sub.plan.speed_limit_bps)
