"""The transactional outbox: events committed with the change they announce, relayed later.

A service that changes what the proxies allow writes its event with `outbox_add()` in
the same database transaction as the change, so an event exists exactly when its change
was committed. `OutboxRelay` (run by the plan-controller loop and a Celery beat task)
sends undelivered rows to Kafka and marks them once the broker acknowledges them.

Each app that publishes has its own concrete outbox on its own database
(`accounts.OutboxEvent`, `plans.OutboxEvent`), a subclass of `AbstractOutboxEvent`. The
relay finds them through the app registry and their database through the router, so no
app imports another's tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.apps import apps
from django.db import models, router, transaction
from django.utils import timezone

from .events import schemas
from .events.bus import EventBusError, EventSink, RawMessage

logger = logging.getLogger(__name__)


class AbstractOutboxEvent(models.Model):
    """One event as it goes on the wire, waiting for Kafka's acknowledgement."""

    event_id = models.UUIDField(unique=True)
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=100)
    payload = models.TextField(help_text="The event's JSON envelope, as sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return f"outbox {self.event_id} -> {self.topic}"


Outbox = TypeVar("Outbox", bound=AbstractOutboxEvent)


def outbox_add(*, model: type[Outbox], event: schemas.Event) -> Outbox:
    """Queue an event for Kafka in the caller's transaction on `model`'s database."""
    return model._default_manager.create(
        event_id=event.event_id,
        topic=schemas.topic_for(event),
        key=event.key,
        payload=event.to_json().decode(),
    )


def outbox_pending(*, model: type[Outbox], limit: int) -> list[Outbox]:
    """Undelivered rows of one outbox, oldest first."""
    return list(model._default_manager.filter(sent_at__isnull=True).order_by("id")[:limit])


def outbox_mark_sent(*, model: type[AbstractOutboxEvent], ids: Sequence[int]) -> int:
    """Mark rows of one outbox as delivered to Kafka; returns how many were still unsent."""
    if not ids:
        return 0
    with transaction.atomic(using=router.db_for_write(model)):
        return model._default_manager.filter(pk__in=list(ids), sent_at__isnull=True).update(
            sent_at=timezone.now()
        )


def outbox_models() -> list[type[AbstractOutboxEvent]]:
    """Every installed concrete outbox (one per publishing app)."""
    return [
        model
        for model in apps.get_models()
        if issubclass(model, AbstractOutboxEvent) and not model._meta.abstract
    ]


class OutboxRelay:
    """Sends undelivered rows of every outbox; marks them once Kafka acks.

    At-least-once: a row may be sent twice (crash after send, before marking), which
    consumers tolerate (restriction versions, idempotent cache drops).
    """

    def __init__(self, producer: EventSink, *, limit: int = 500, interval: float = 0.5) -> None:
        self.producer = producer
        self.limit = limit
        self.interval = interval
        self.models = outbox_models()
        self._last = 0.0
        self._delivered: dict[type[AbstractOutboxEvent], list[int]] = {m: [] for m in self.models}

    def _callback(
        self, model: type[AbstractOutboxEvent], pk: int
    ) -> Callable[[Exception | None, RawMessage], None]:
        def done(err: Exception | None, msg: RawMessage) -> None:
            if err is None:
                self._delivered[model].append(pk)
            else:
                logger.warning("outbox row %s (%s) not delivered: %s", pk, model._meta.label, err)

        return done

    def _mark(self) -> int:
        marked = 0
        for model in self.models:
            ids, self._delivered[model] = self._delivered[model], []
            marked += outbox_mark_sent(model=model, ids=ids)
        return marked

    def step(self, *, force: bool = False, flush_timeout: float = 2.0) -> int:
        """One relay round; returns how many rows were marked delivered."""
        self.producer.poll(0)
        marked = self._mark()
        now = time.monotonic()
        if len(self.producer) or (not force and now - self._last < self.interval):
            return marked  # earlier sends still in flight (broker slow or down)
        self._last = now
        sent = 0
        for model in self.models:
            for row in outbox_pending(model=model, limit=self.limit):
                try:
                    self.producer.send_raw(
                        row.topic,
                        key=row.key.encode(),
                        value=row.payload.encode(),
                        on_delivery=self._callback(model, row.pk),
                    )
                except EventBusError as exc:
                    logger.warning("outbox relay paused: %s", exc)
                    break
                sent += 1
        if sent:
            self.producer.flush(flush_timeout)
        return marked + self._mark()
