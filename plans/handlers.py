"""Kafka handlers of the plan-controller: one function per consumed event type.

Handlers only translate events into one service call; the consumer loop
(plans/consumer.py) owns batching, retries, dead-lettering and offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from goproxy_site.events import schemas

from . import services


def handle_traffic(
    events: Sequence[schemas.UserConsumedTrafficEvent],
) -> services.TrafficBatchResult:
    """Apply a batch of traffic deltas in one plans-DB transaction."""
    return services.traffic_apply_batch(deltas=events)


# Event type -> batch handler. Types not listed are logged and skipped by the loop.
HANDLERS: dict[type[schemas.Event], Callable[[Sequence], services.TrafficBatchResult]] = {
    schemas.UserConsumedTrafficEvent: handle_traffic,
}
