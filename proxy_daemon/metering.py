"""Exact per-user byte metering: the counts and their hand-over to a reporter.

Definition (also in the README): `bytes_up` is every byte the proxy read from the client
for a user's admitted requests and tunnels (request heads with their Proxy-Authorization,
bodies with their chunk framing, the CONNECT head and everything relayed after it);
`bytes_down` is every byte the proxy wrote to that client for them (response heads,
interim 100 responses, bodies, the CONNECT 200 line and everything relayed after it).
Requests refused before admission (400, 407, 429, restricted 403) are not counted.

Counting is plain integer adds on the data path; `Meter.swap()` replaces the dict, so a
byte lands in exactly one interval and is never lost or counted twice.
"""

from __future__ import annotations

import logging

from .hooks import Reporter, TrafficDelta

logger = logging.getLogger(__name__)


class Meter:
    """Per-user [up, down] counters since the last swap."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[int, list[int]] = {}

    def add(self, user_id: int, up: int, down: int) -> None:
        counts = self._counts.get(user_id)
        if counts is None:
            self._counts[user_id] = [up, down]
        else:
            counts[0] += up
            counts[1] += down

    def swap(self) -> list[TrafficDelta]:
        """Deltas since the previous swap (non-zero only), and start a new interval."""
        counts, self._counts = self._counts, {}
        return [TrafficDelta(uid, up, down) for uid, (up, down) in counts.items() if up or down]

    def restore(self, deltas: list[TrafficDelta]) -> None:
        """Put back deltas a reporter refused, so they go out with the next interval."""
        for d in deltas:
            self.add(d.user_id, d.bytes_up, d.bytes_down)


def flush(meter: Meter, reporter: Reporter) -> int:
    """Hand the current interval to the reporter; returns the number of deltas."""
    deltas = meter.swap()
    if not deltas:
        return 0
    try:
        reporter.report(deltas)
    except Exception:
        logger.exception(
            "reporter %r failed; %d deltas kept for the next interval", reporter, len(deltas)
        )
        meter.restore(deltas)
        return 0
    return len(deltas)
