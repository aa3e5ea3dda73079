"""Reporters: the local ones, and the counting wrapper that feeds /metrics."""

from __future__ import annotations

import json
from pathlib import Path

from django.test import override_settings

from proxy_daemon.hooks import TrafficDelta
from proxy_daemon.metering import Meter, flush
from proxy_daemon.metrics import ProxyMetrics
from proxy_daemon.reporters.counting import CountingReporter
from proxy_daemon.reporters.local import FileReporter, MemoryReporter


class MemoryReporterTests:
    def test_totals_add_up_over_reports(self) -> None:
        reporter = MemoryReporter()
        reporter.start()
        reporter.report([TrafficDelta(1, 10, 20), TrafficDelta(2, 1, 0)])
        reporter.report([TrafficDelta(1, 5, 5)])
        assert reporter.totals == {1: [15, 25], 2: [1, 0]}
        assert reporter.reports == 2
        assert reporter.delivery() is None  # nothing leaves this host


class FileReporterTests:
    def test_one_json_line_per_delta_then_a_closing_line(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "meter.jsonl"
        with override_settings(PROXY_METER_FILE=str(path)):
            reporter = FileReporter()
        reporter.start()
        reporter.report([TrafficDelta(1, 10, 20), TrafficDelta(2, 1, 0)])
        reporter.report([TrafficDelta(1, 5, 5)])
        reporter.close(timeout=1.0)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert rows == [
            {"user_id": 1, "bytes_up": 10, "bytes_down": 20},
            {"user_id": 2, "bytes_up": 1, "bytes_down": 0},
            {"user_id": 1, "bytes_up": 5, "bytes_down": 5},
            {"closed": True},
        ]


class CountingReporterTests:
    def test_bytes_are_counted_once_even_when_the_reporter_refuses(self) -> None:
        class Flaky:
            calls = 0

            def start(self) -> None: ...
            def close(self, timeout: float) -> None: ...
            def delivery(self) -> None: ...

            def report(self, deltas: list[TrafficDelta]) -> None:
                self.calls += 1
                if self.calls == 1:
                    raise RuntimeError("broker hiccup")

        m = ProxyMetrics()
        meter = Meter()
        counted = CountingReporter(Flaky(), m)
        meter.add(1, 100, 1000)
        assert flush(meter, counted) == 0  # refused: restored to the meter, not counted
        assert (m.bytes_in, m.bytes_out) == (0, 0)
        meter.add(2, 5, 7)
        assert flush(meter, counted) == 2
        assert (m.bytes_in, m.bytes_out) == (105, 1007)
        assert counted.delivery() is None  # the wrapped reporter's answer
