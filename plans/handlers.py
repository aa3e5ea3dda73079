"""Kafka handlers of the plan-controller: what each consumed event type is applied by.

Handlers only translate events into one service call; the consumer loop
(plans/consumer.py) owns batching, retries, dead-lettering, offsets and sending the
grant answers. The traffic topic's three event types go to ONE call per batch, so a
user's deltas, grant returns and grant requests are applied in one transaction, deltas
first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from goproxy_site.events import schemas

from . import services


def handle_traffic(events: Sequence[schemas.Event]) -> services.TrafficBatchResult:
    """Apply a batch of traffic deltas and quota-grant requests and returns."""
    return services.traffic_apply_batch(
        deltas=[e for e in events if isinstance(e, schemas.UserConsumedTrafficEvent)],
        grant_requests=[e for e in events if isinstance(e, schemas.QuotaGrantRequest)],
        grant_returns=[e for e in events if isinstance(e, schemas.QuotaGrantReturn)],
    )


Handler = Callable[[Sequence[schemas.Event]], services.TrafficBatchResult]

# Event type -> batch handler. Types not listed are logged and skipped by the loop.
HANDLERS: dict[type[schemas.Event], Handler] = {
    schemas.UserConsumedTrafficEvent: handle_traffic,
    schemas.QuotaGrantRequest: handle_traffic,
    schemas.QuotaGrantReturn: handle_traffic,
}
