"""Celery worker bootstep that runs the plan-controller loop in a worker thread.

Registered in goproxy_site/celery.py; starts after the pool (so no fork happens with
librdkafka threads running) and stops before the worker exits, leaving the current
batch uncommitted if it is still waiting on an outage.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from celery import bootsteps
from celery.worker import WorkController
from django.conf import settings

from .metrics import metrics_server_start

logger = logging.getLogger(__name__)


class PlanControllerStep(bootsteps.StartStopStep):
    """Consume the traffic topic in group KAFKA_CONSUMER_GROUP inside `celery worker`."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: WorkController, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._metrics_server: WSGIServer | None = None

    def _run(self) -> None:
        # Late: the consumer reaches the ORM, and this module is imported with the Celery
        # app (goproxy_site/celery.py), before the worker has set Django up.
        from .consumer import Stopped, plan_controller_build  # noqa: PLC0415

        try:
            plan_controller_build(should_stop=self._stop.is_set).run()
        except Stopped:
            logger.info("plan-controller stopped before the broker was reachable")
        except Exception:
            logger.exception("plan-controller loop crashed")
            raise

    def start(self, worker: WorkController) -> None:
        if settings.WORKER_METRICS_PORT is not None and self._metrics_server is None:
            self._metrics_server = metrics_server_start(
                settings.WORKER_METRICS_PORT, settings.WORKER_METRICS_ADDR
            )
        if not settings.KAFKA_PLAN_CONTROLLER_ENABLED:
            logger.info("plan-controller disabled (KAFKA_PLAN_CONTROLLER_ENABLED=False)")
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="plan-controller", daemon=True)
        self._thread.start()
        logger.info("plan-controller started")

    def stop(self, worker: WorkController) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            logger.info("plan-controller stopped")
            self._thread = None
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
