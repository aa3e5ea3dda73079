"""limits: token buckets, the plan-limits cache, connection counts."""

from __future__ import annotations

import pytest

from proxy_daemon.limits import (
    UNLIMITED,
    ConnectionCounter,
    TokenBucket,
    UserLimits,
    UserLimitsCache,
)


class LimitTests:
    def test_token_bucket_allows_a_burst_then_the_rate(self) -> None:
        bucket = TokenBucket(1000, now=0.0)
        assert bucket.max_read == 16 * 1024  # minimum burst
        bucket = TokenBucket(100_000, now=0.0)
        assert bucket.consume(100_000, now=0.0) == 0.0
        assert bucket.consume(50_000, now=0.0) == pytest.approx(0.5)
        assert bucket.consume(50_000, now=1.0) == pytest.approx(0.0)

    def test_limits_cache_keeps_last_known_limits_when_the_db_fails(self) -> None:
        calls: list[int] = []

        def loader(user_id: int) -> UserLimits:
            calls.append(user_id)
            if len(calls) > 1:
                raise RuntimeError("plans DB down")
            return UserLimits(max_connections=3, speed_bps=None)

        cache = UserLimitsCache(loader, ttl=0.0)
        assert cache.get(1).max_connections == 3
        assert cache.get(1).max_connections == 3  # loader failed: last known limits
        assert UserLimitsCache(lambda uid: loader(uid), ttl=0).get(2) == UNLIMITED

    def test_connection_counter(self) -> None:
        counter = ConnectionCounter()
        assert counter.acquire(1, 2) and counter.acquire(1, 2)
        assert counter.acquire(1, 2) is False
        assert counter.acquire(1, None) is True  # no plan limit
        counter.release(1)
        assert counter.counts == {1: 2}
