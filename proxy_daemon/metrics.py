"""The proxy's counters: plain integer arithmetic on its hot path.

The data path only bumps fields of one `ProxyMetrics` object (no lock, no label look-up
per request or per chunk); admin_server turns them into Prometheus metric families when
scraped. Byte counts come from the meter's per-interval hand-over
(`reporters.counting.CountingReporter`), so they are exactly the billed bytes and cost
nothing per chunk; they lag by at most PROXY_METER_INTERVAL.
"""

from __future__ import annotations


class ProxyMetrics:
    """Counters the server bumps on its hot path; read only at scrape time."""

    __slots__ = (
        "accepted",
        "auth_failures",
        "bytes_in",
        "bytes_out",
        "restriction_cuts",
        "restriction_refusals",
        "statuses",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.statuses: dict[int, int] = {}
        self.auth_failures: dict[str, int] = {}
        self.restriction_cuts = 0
        self.restriction_refusals = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def status(self, code: int) -> None:
        """One response (final status) sent to a client, or one refusal."""
        statuses = self.statuses
        statuses[code] = statuses.get(code, 0) + 1

    def auth_failure(self, status: int, header: str | None) -> None:
        """A refused login: 407 without or with credentials, or 429 from the IP throttle."""
        if status == 429:
            reason = "throttled"
        elif header is None:
            reason = "missing"
        else:
            reason = "invalid"
        failures = self.auth_failures
        failures[reason] = failures.get(reason, 0) + 1
