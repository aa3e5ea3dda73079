"""The plan-controller's heartbeat: each worker's lag, written where the web can read it."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from goproxy_site.db_routers import PLANS_DB
from plans.models import ControllerHeartbeat


def controller_heartbeat_record(
    *, worker: str, lag_events: int, lag_seconds: float, events_per_second: float
) -> ControllerHeartbeat:
    """Record what `worker` says about its backlog now (one row per worker)."""
    with transaction.atomic(using=PLANS_DB):
        row, _ = ControllerHeartbeat.objects.update_or_create(
            worker=worker,
            defaults={
                "lag_events": lag_events,
                "lag_seconds": lag_seconds,
                "events_per_second": events_per_second,
                "updated_at": timezone.now(),
            },
        )
    return row
