"""`runproxy --workers N`: several proxy processes on one port (SO_REUSEPORT).

Checks that connections are spread over the workers, that each worker meters its own
traffic (the totals over all workers are exact), that SIGTERM to the supervisor stops
every worker, and that a worker's death takes the whole group down instead of leaving
a half-running proxy on the port.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import (
    E2E,
    OriginServer,
    ProxyProcess,
    ProxyUser,
    RawClient,
    basic,
)

pytestmark = E2E

WORKERS = 2


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def upstream_sockets(pid: int, remote_port: int) -> int:
    """How many of pid's sockets are TCP connections to 127.0.0.1:remote_port."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{remote_port:04X}") and fields[9] in inodes:
            count += 1
    return count


@pytest.fixture
def workers_proxy(
    proxy_users: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    proc = ProxyProcess(
        Path(tmp_path_factory.mktemp("workers")),
        {"PROXY_DRAIN_TIMEOUT": "2"},
        "goproxy_site.settings.test",
        ["--workers", str(WORKERS)],
    ).start()
    yield proc
    proc.stop()


def get(port: int, origin: OriginServer, user: ProxyUser) -> tuple[int, int, int]:
    """status, bytes sent, bytes received for one request on a new connection."""
    client = RawClient(port)
    client.send(
        (
            f"GET {origin.url('/')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
            f"Proxy-Authorization: {basic(*user.auth)}\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    resp = client.response()
    client.close()
    return resp.status, client.sent, resp.size


class WorkersTests:
    def test_connections_are_spread_and_metering_stays_exact(
        self, workers_proxy: ProxyProcess, origin: OriginServer, proxy_users: dict
    ) -> None:
        assert workers_proxy.proc is not None
        pids = children(workers_proxy.proc.pid)
        assert len(pids) == WORKERS
        user = proxy_users["px-meter-http"]
        up = down = 0
        for _ in range(40):
            status, sent, received = get(workers_proxy.port, origin, user)
            assert status == 200
            up += sent
            down += received
        # Both workers served some of the 40 connections: each holds pooled upstream
        # connections to the origin (kernel hashing leaves one idle with p = 2**-39).
        served_by = {pid for pid in pids if upstream_sockets(pid, origin.port)}
        assert served_by == set(pids)
        log = workers_proxy.log()
        assert log.count("worker ready on") == WORKERS
        assert workers_proxy.wait_meter(user.user_id, (up, down)) == (up, down)

    def test_sigterm_reaches_every_worker(self, workers_proxy: ProxyProcess) -> None:
        assert workers_proxy.proc is not None
        pids = children(workers_proxy.proc.pid)
        assert len(pids) == WORKERS
        rc = workers_proxy.stop()
        assert rc == 0, workers_proxy.log()
        assert wait_for(lambda: not any(alive(p) for p in pids), timeout=5)
        log = workers_proxy.log()
        assert log.count("proxy stopped") == WORKERS
        assert "all 2 workers stopped" in log
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", workers_proxy.port), timeout=1).close()

    def test_a_dead_worker_stops_the_group(self, workers_proxy: ProxyProcess) -> None:
        assert workers_proxy.proc is not None
        pids = children(workers_proxy.proc.pid)
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while workers_proxy.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers_proxy.proc.returncode == 1, workers_proxy.log()
        assert not alive(pids[1])
        assert "exited with status -9; stopping the others" in workers_proxy.log()
