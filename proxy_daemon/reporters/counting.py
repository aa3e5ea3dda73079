"""The reporter wrapper that feeds the proxy's byte counters (/metrics)."""

from __future__ import annotations

from proxy_daemon.hooks import DeliveryState, Reporter, TrafficDelta
from proxy_daemon.metrics import ProxyMetrics


class CountingReporter:
    """Wraps the configured Reporter: adds each accepted hand-over to the byte counters.

    Deltas are counted only after the wrapped reporter accepted them; a refused hand-over
    is restored to the meter by `metering.flush()` and counted when it is accepted.
    """

    def __init__(self, reporter: Reporter, metrics: ProxyMetrics) -> None:
        self.reporter = reporter
        self.metrics = metrics

    def start(self) -> None:
        self.reporter.start()

    def report(self, deltas: list[TrafficDelta]) -> None:
        self.reporter.report(deltas)
        metrics = self.metrics
        for d in deltas:
            metrics.bytes_in += d.bytes_up
            metrics.bytes_out += d.bytes_down

    def close(self, timeout: float) -> None:
        self.reporter.close(timeout)

    def delivery(self) -> DeliveryState | None:
        return self.reporter.delivery()
