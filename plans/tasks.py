"""Celery tasks of the plans app: periodic sweeps and the outbox relay backup."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from . import services

logger = logging.getLogger(__name__)

_relay = None


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_kwargs={"max_retries": 3},
)
def subscription_expire_due_task() -> list[int]:
    """Expire due subscriptions so idle users are restricted on time."""
    expired = services.subscription_expire_due()
    if expired:
        logger.info("expired subscriptions of users %s", expired)
    return expired


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_kwargs={"max_retries": 3},
)
def outbox_relay_task() -> int:
    """Relay undelivered outbox rows (backs up the worker's relay loop)."""
    global _relay
    if _relay is None:
        from goproxy_site.events.kafka import KafkaEventProducer

        from .consumer import OutboxRelay

        _relay = OutboxRelay(KafkaEventProducer())
    return _relay.step(force=True, flush_timeout=5.0)


@shared_task
def traffic_sequences_prune_task() -> int:
    """Delete sequence high-water marks of long-gone proxy instances."""
    return services.traffic_sequences_prune(
        older_than=timedelta(days=settings.KAFKA_SEQUENCE_RETENTION_DAYS)
    )
