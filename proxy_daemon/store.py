"""The proxy's database access: every ORM read of the daemon, and the pool it runs in.

The lookups go through the selectors and services of `accounts` and `plans`, never the
models. `DBRunner` runs them in a bounded pool of native threads: each greenlet would
otherwise open its own DB connection, and SQLite calls block the hub. Each call closes
its connection afterwards unless CONN_MAX_AGE keeps it (then at most one connection per
pool thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple, ParamSpec, TypeVar

from django.db import DatabaseError, close_old_connections, connections
from gevent.threadpool import ThreadPool

from accounts.selectors import credential_authenticate
from accounts.services import credential_touch
from goproxy_site.db_routers import PLANS_DB
from plans.selectors import restriction_states, subscription_get_current, throttle_states

from .auth import Principal
from .limits import UNLIMITED, UserLimits

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
SNAPSHOT_ATTEMPTS = 5


def _run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


class DBRunner:
    """Runs ORM calls in `threads` native threads; the calling greenlet waits."""

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPool(threads)

    def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self.pool.apply(_run, (fn, *args), kwargs)
        return result

    def close(self) -> None:
        self.pool.kill()


def credential_lookup(login: str, secret: str) -> Principal | None:
    """The principal of a valid login and secret (its use recorded), else None."""
    credential = credential_authenticate(login=login, secret=secret)
    if credential is None:
        return None
    credential_touch(credential_id=credential.pk)
    return Principal(
        user_id=credential.user_id, login=credential.login, credential_id=credential.pk
    )


def plan_limits(user_id: int) -> UserLimits:
    """The limits of the user's current plan, all from one query (unlimited without one)."""
    sub = subscription_get_current(user_id=user_id)
    if sub is None:
        return UNLIMITED
    plan = sub.plan
    return UserLimits(
        max_connections=plan.max_connections,
        speed_bps=plan.speed_limit_bps,
        device_limit=plan.device_limit,
    )


class RestrictionSnapshot(NamedTuple):
    # user_id -> (restriction reason code, "" when not restricted; restriction version)
    states: dict[int, tuple[str, int]]
    throttles: dict[int, int]  # user_id -> B/s while over a throttling quota


def restriction_snapshot(*, attempts: int = SNAPSHOT_ATTEMPTS) -> RestrictionSnapshot:
    """Every user's restriction state and throttle from the plans DB, for a proxy that
    starts; retried with a growing pause, then RuntimeError naming the DB error."""
    for attempt in range(1, attempts + 1):
        try:
            return RestrictionSnapshot(restriction_states(), throttle_states())
        except DatabaseError as exc:
            if attempt == attempts:
                raise RuntimeError(f"cannot load restrictions from the plans DB: {exc}") from exc
            logger.warning("loading restrictions failed (%s); retrying", exc)
            time.sleep(0.5 * attempt)
        finally:
            # The start-up greenlet keeps no connection (outside a test's transaction).
            conn = connections[PLANS_DB]
            if not conn.in_atomic_block:
                conn.close()
    raise AssertionError("unreachable: the last attempt returns or raises")
