"""metrics: the counters the server bumps on its hot path."""

from __future__ import annotations

from proxy_daemon.metrics import ProxyMetrics


class ProxyMetricsTests:
    def test_auth_failures_are_counted_by_reason(self) -> None:
        m = ProxyMetrics()
        m.auth_failure(407, None)
        m.auth_failure(407, "Basic eDp5")
        m.auth_failure(407, "Basic eDp6")
        m.auth_failure(429, "Basic eDp5")
        assert m.auth_failures == {"missing": 1, "invalid": 2, "throttled": 1}
