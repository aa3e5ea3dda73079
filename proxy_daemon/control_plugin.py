"""Control plugin: applies restriction, plan and credential events to a running proxy.

At start it loads every user's restriction state from the plans DB (so a restarted
proxy is never looser than the database), then reads the control topic with manual
assignment of all partitions from the beginning: no consumer group, so every proxy
instance sees every event. Restriction events and PlanAssignedEvent carry the user's
restriction version; an event not newer than what the proxy already applied (e.g. a
replay of the topic's history) is ignored.

A native thread from a private gevent ThreadPool owns the confluent-kafka consumer;
decoded events go to a deque and wake the hub through a gevent async watcher, and a
greenlet applies them to the server (ProxyControl), so the hub never blocks on Kafka.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import gevent
from django.conf import settings
from gevent.event import AsyncResult
from gevent.monkey import get_original
from gevent.threadpool import ThreadPool

from goproxy_site.events import schemas
from goproxy_site.events.kafka import EventBusError, KafkaEventConsumer

from .hooks import ProxyControl
from .store import restriction_snapshot

logger = logging.getLogger(__name__)

POLL_TIMEOUT = 0.2
ASSIGN_RETRY_INTERVAL = 1.0


def reason_text(code: str) -> str:
    return schemas.REASON_TEXT.get(code, code)


class Wakeup(Protocol):
    """gevent's async watcher: another thread's send() runs the callback on the hub."""

    def start(self, callback: Callable[[], object]) -> None: ...

    def send(self) -> None: ...

    def close(self) -> None: ...


class KafkaControlPlugin:
    """ControlPlugin (proxy_daemon.hooks) fed by KAFKA_TOPIC_CONTROL."""

    def __init__(self, control: ProxyControl) -> None:
        self.control = control
        self.topic = settings.KAFKA_TOPIC_CONTROL
        self.versions: dict[int, int] = {}
        self.applied = 0
        # For /healthz: the DB snapshot is applied; the control topic is assigned.
        self.loaded = False
        self.streaming = False
        self._queue: deque[schemas.Event] = deque()
        self._stopping = False
        self._pool: ThreadPool | None = None
        self._done: AsyncResult | None = None
        self._watcher: Wakeup | None = None

    # -- state -----------------------------------------------------------------------
    def load_restrictions(self) -> int:
        """Apply the plans DB's restriction states; returns how many users are restricted."""
        snapshot = restriction_snapshot()
        restricted = 0
        for user_id, (reason, version) in snapshot.states.items():
            self.versions[user_id] = version
            if reason:
                self.control.restrict(user_id, reason_text(reason))
                restricted += 1
        for user_id, speed in snapshot.throttles.items():
            self.control.throttle(user_id, speed)
        return restricted

    def _newer(self, user_id: int, version: int) -> bool:
        if version <= self.versions.get(user_id, 0):
            return False
        self.versions[user_id] = version
        return True

    def apply(self, event: schemas.Event) -> None:
        """Apply one control event to the proxy (on the hub)."""
        if isinstance(event, schemas.RESTRICTION_TYPES):
            if self._newer(event.user_id, event.restriction_version):
                self.control.restrict(event.user_id, reason_text(event.reason))
                logger.info("restricted user %s: %s", event.user_id, event.reason)
        elif isinstance(event, schemas.PlanAssignedEvent):
            self.control.refresh_user_limits(event.user_id)
            if self._newer(event.user_id, event.restriction_version):
                self.control.lift(event.user_id)
                self.control.throttle(event.user_id, None)
                logger.info("lifted restriction of user %s", event.user_id)
        elif isinstance(event, schemas.UserThrottledEvent):
            if self._newer(event.user_id, event.restriction_version):
                self.control.lift(event.user_id)
                self.control.throttle(event.user_id, event.speed_bps)
                logger.info("throttled user %s to %s B/s", event.user_id, event.speed_bps)
        elif isinstance(event, schemas.ProxyCredentialRevoked):
            self.control.invalidate_credentials(login=event.login)
        elif isinstance(event, schemas.UserDeactivated):
            self.control.invalidate_credentials(user_id=event.user_id)
        else:
            return
        self.applied += 1

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        count = self.load_restrictions()
        self.loaded = True
        logger.info("loaded restrictions: %d user(s) restricted", count)
        watcher: Wakeup = gevent.get_hub().loop.async_()
        watcher.start(lambda: gevent.spawn(self._drain))
        self._watcher = watcher
        self._pool = ThreadPool(1)
        self._done = self._pool.spawn(self._run)

    def stop(self) -> None:
        self._stopping = True
        if self._pool is not None and self._done is not None:
            self._done.wait(5.0)
            self._pool.kill()
        if self._watcher is not None:
            self._watcher.close()

    def _drain(self) -> None:
        while self._queue:
            event = self._queue.popleft()
            try:
                self.apply(event)
            except Exception:
                logger.exception("applying %s failed", event.type)

    # -- consumer thread -------------------------------------------------------------
    def _decode(self, value: bytes | None) -> schemas.Event | None:
        try:
            return schemas.from_json(value)
        except schemas.UnknownEventError as exc:
            logger.warning("control event skipped: %s", exc)
        except schemas.EventError as exc:
            logger.error("malformed control event skipped: %s", exc)
        return None

    def _run(self) -> None:
        sleep = get_original("time", "sleep")
        wakeup = self._watcher
        assert wakeup is not None, "start() sets the watcher before the thread runs"
        librdkafka: dict[str, Any] = {"log.connection.close": False}  # librdkafka settings
        consumer = KafkaEventConsumer(
            group_id="goproxy-proxy",  # required by librdkafka; never joined (manual mode)
            topics=[self.topic],
            manual=True,
            **librdkafka,
        )
        try:
            while not self._stopping and not consumer.assign_all():
                sleep(ASSIGN_RETRY_INTERVAL)
            self.streaming = not self._stopping
            while not self._stopping:
                try:
                    msgs = consumer.consume(500, POLL_TIMEOUT)
                except EventBusError as exc:
                    logger.warning("control consumer: %s", exc)
                    sleep(ASSIGN_RETRY_INTERVAL)
                    continue
                events = [e for e in (self._decode(m.value) for m in msgs) if e is not None]
                if events:
                    self._queue.extend(events)
                    wakeup.send()
        finally:
            self.streaming = False
            consumer.close()
