"""Reporters that keep the byte deltas on this host: in memory, or in a JSON-lines file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TextIO

from django.conf import settings

from proxy_daemon.hooks import DeliveryState, TrafficDelta

logger = logging.getLogger(__name__)


class MemoryReporter:
    """Keeps running totals in memory (the default; the Kafka reporter replaces it)."""

    def __init__(self) -> None:
        self.totals: dict[int, list[int]] = {}
        self.reports = 0

    def start(self) -> None:
        return None

    def report(self, deltas: list[TrafficDelta]) -> None:
        self.reports += 1
        for d in deltas:
            total = self.totals.setdefault(d.user_id, [0, 0])
            total[0] += d.bytes_up
            total[1] += d.bytes_down

    def close(self, timeout: float) -> None:
        logger.info("meter totals at shutdown: %s", self.totals)

    def delivery(self) -> DeliveryState | None:
        return None


class FileReporter:
    """Appends one JSON line per delta to settings.PROXY_METER_FILE (tests, debugging)."""

    def __init__(self) -> None:
        self.path = Path(settings.PROXY_METER_FILE)
        self._file: TextIO | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def report(self, deltas: list[TrafficDelta]) -> None:
        assert self._file is not None, "FileReporter.start() was not called"
        lines = "".join(
            json.dumps({"user_id": d.user_id, "bytes_up": d.bytes_up, "bytes_down": d.bytes_down})
            + "\n"
            for d in deltas
        )
        self._file.write(lines)
        self._file.flush()

    def close(self, timeout: float) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"closed": True}) + "\n")
            self._file.close()
            self._file = None

    def delivery(self) -> DeliveryState | None:
        return None
