"""Celery tasks of the plans app: periodic sweeps, notifications and the outbox relay backup.

The outermost layer: each task takes ids, calls one service and logs; nothing imports
this module (services enqueue its tasks by name after commit).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, TypedDict

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from goproxy_site.events.kafka import KafkaEventProducer
from goproxy_site.outbox import OutboxRelay

from . import notifications, services

logger = logging.getLogger(__name__)


class RetryOptions(TypedDict):
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: bool
    retry_kwargs: dict[str, Any]


def db_retry(max_retries: int) -> RetryOptions:
    """Retry a task with backoff when the plans DB is briefly unreachable."""
    return {
        "autoretry_for": (OperationalError, InterfaceError),
        "retry_backoff": True,
        "retry_kwargs": {"max_retries": max_retries},
    }


# One relay (and Kafka producer) per worker process, built on the first run.
_relay: OutboxRelay | None = None


@shared_task(**db_retry(3))
def subscription_expire_due_task() -> list[int]:
    """Expire due subscriptions so idle users are restricted on time."""
    expired = services.subscription_expire_due()
    if expired:
        logger.info("expired subscriptions of users %s", expired)
    return expired


@shared_task(**db_retry(3))
def outbox_relay_task() -> int:
    """Relay undelivered outbox rows (backs up the worker's relay loop)."""
    global _relay
    if _relay is None:
        _relay = OutboxRelay(KafkaEventProducer())
    return _relay.step(force=True, flush_timeout=5.0)


@shared_task
def traffic_sequences_prune_task() -> int:
    """Delete sequence high-water marks of long-gone proxy instances."""
    return services.traffic_sequences_prune(
        older_than=timedelta(days=settings.KAFKA_SEQUENCE_RETENTION_DAYS)
    )


@shared_task(**db_retry(3))
def lifecycle_tick_task() -> dict[str, list[int] | list[tuple[int, int]]]:
    """Clock-driven lifecycle: on-hold deadlines, reset-cycle boundaries, expiry
    reminders (expiry itself is subscription_expire_due_task)."""
    result: dict[str, list[int] | list[tuple[int, int]]] = {
        "started": services.subscription_start_due(),
        "reset": services.subscription_reset_due(),
        "reminded": notifications.expiry_due(),
    }
    if any(result.values()):
        logger.info("lifecycle tick: %s", result)
    return result


@shared_task(**db_retry(5))
def notification_dispatch_task(notification_id: int) -> list[int]:
    """E-mail one notification and queue its webhook deliveries."""
    return notifications.notification_dispatch(notification_id=notification_id)


@shared_task(bind=True, max_retries=None, acks_late=True)
def webhook_deliver_task(self: Task, delivery_id: int) -> bool:
    """One webhook attempt; retried with doubling delays until delivered or given up
    (the service marks the delivery failed after PLANS_WEBHOOK_MAX_ATTEMPTS)."""
    try:
        return notifications.webhook_deliver(delivery_id=delivery_id)
    except notifications.WebhookDeliveryError as exc:
        delay = min(settings.PLANS_WEBHOOK_RETRY_DELAY * 2**self.request.retries, 3600.0)
        logger.info("webhook delivery %s: %s; retry in %.0fs", delivery_id, exc, delay)
        raise self.retry(exc=exc, countdown=delay) from exc
