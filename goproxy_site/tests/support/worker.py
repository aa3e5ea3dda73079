"""`celery -A goproxy_site worker` as a subprocess, with the plan-controller bootstep, on
the test databases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from django.conf import settings

from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import db_url
from goproxy_site.tests.support.traffic import WAIT

ROOT = Path(settings.BASE_DIR)


def stack_env(bootstrap: str, tmp: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "goproxy_site.settings.test",
        "ACCOUNTS_DATABASE_URL": db_url("default"),
        "PLANS_DATABASE_URL": db_url("plans"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_REPORTER_SPOOL_DIR": str(tmp / "spool"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",
    }


class WorkerProcess:
    """`celery -A goproxy_site worker` with the plan-controller bootstep."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_assigned: bool = True) -> WorkerProcess:
        queue = f"goproxy{os.environ.get('GOPROXY_TEST_DB_SUFFIX', '')}"
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "goproxy_site",
                    "worker",
                    "-P",
                    "solo",
                    "-Q",
                    queue,
                    "-l",
                    "info",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-n",
                    f"pipeline-{uuid.uuid4().hex[:8]}@%h",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        marker = b"assigned [" if wait_assigned else b"plan-controller started"
        ok = wait_for(
            lambda: marker in self.log_file.read_bytes()[offset:] or self.exited(), timeout=WAIT
        )
        assert ok and not self.exited(), self.log()
        return self

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
