"""`runproxy --workers N`: N independent proxy processes sharing one port.

Each worker is a fresh `manage.py runproxy --reuse-port` process (fork+exec, so no
threads, DB connections or broker clients are inherited) with its own listener bound
with SO_REUSEPORT; the kernel spreads new connections across them. Every worker has its
own meter, reporter and control plugins, so each reports its own traffic deltas.

The supervisor relays the workers' output, says "listening" once every worker is ready,
forwards SIGTERM/SIGINT to every worker and waits for all of them (each drains its own
connections). If a worker dies, the others are stopped too and the exit status is 1:
a half-running proxy on a shared port is worse than a visible failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import gevent
from django.conf import settings
from django.core.management.base import OutputWrapper
from gevent.event import Event

READY = b"worker ready on"
START_TIMEOUT = 60.0


def reuse_port_listener(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """A listening socket that other processes may bind to the same port as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def supervise(
    *,
    workers: int,
    host: str,
    port: int,
    drain_timeout: float,
    admin_port: int | None,
    out: OutputWrapper,
) -> int:
    """Run the workers until a signal or a worker's death; the process exit status."""
    if port == 0:
        out.write("--workers needs a fixed --port (0 would give each worker its own port)")
        return 2
    manage = str(settings.BASE_DIR / "manage.py")
    procs: list[subprocess.Popen[bytes]] = []
    ready = [Event() for _ in range(workers)]
    stop = Event()
    for i in range(workers):
        cmd = [sys.executable, manage, "runproxy", "--reuse-port"]
        cmd += ["--host", host, "--port", str(port), "--drain-timeout", str(drain_timeout)]
        if admin_port:  # one admin port per worker: base, base+1, ...
            cmd += ["--admin-port", str(admin_port + i)]
        env = {**os.environ, "GOPROXY_WORKER": str(i)}
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        )

    def relay(i: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if READY in line:
                ready[i].set()
            sys.stdout.buffer.write(b"[worker %d] " % i + line)
            sys.stdout.flush()

    relays = [gevent.spawn(relay, i, p) for i, p in enumerate(procs)]
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    deadline = time.monotonic() + START_TIMEOUT
    for event in ready:
        if not event.wait(max(0.0, deadline - time.monotonic())) or stop.is_set():
            break
    if all(e.is_set() for e in ready) and not stop.is_set():
        out.write(f"goproxy proxy listening on {host}:{port} ({workers} workers, SO_REUSEPORT)")
        out.flush()
        status = 0
    else:
        out.write("not every worker started; stopping the others")
        out.flush()
        status = 1
    # Bounded polling: a worker that dies on its own takes the others down with it.
    while status == 0 and not stop.wait(0.5):
        dead = [(i, p.returncode) for i, p in enumerate(procs) if p.poll() is not None]
        if dead:
            out.write(f"worker {dead[0][0]} exited with status {dead[0][1]}; stopping the others")
            out.flush()
            status = 1
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    give_up = time.monotonic() + drain_timeout + 15.0
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, give_up - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            status = 1
        if proc.returncode != 0:
            status = 1
    gevent.joinall(relays, timeout=5)
    out.write(f"all {workers} workers stopped")
    out.flush()
    return status
