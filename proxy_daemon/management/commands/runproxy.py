"""Run the gevent forward proxy.

manage.py monkey-patches before Django is imported for this command. SIGTERM/SIGINT stop
accepting, let open connections drain up to PROXY_DRAIN_TIMEOUT, flush the meter one last
time, close the reporter and plugins, and exit 0. The proxy itself is built and run by
proxy_daemon.app; `--workers N` runs N of them under a supervisor (proxy_daemon.workers).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
from typing import Any

import gevent
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from gevent import monkey
from gevent.event import Event

from proxy_daemon.app import AdminPortUnavailable, Listener, Proxy
from proxy_daemon.workers import reuse_port_listener, supervise


class Command(BaseCommand):
    help = "Run the authenticating HTTP(S) forward proxy."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", type=str, default=None, help="default: PROXY_HOST")
        parser.add_argument("--port", type=int, default=None, help="default: PROXY_PORT")
        parser.add_argument(
            "--drain-timeout", type=float, default=None, help="default: PROXY_DRAIN_TIMEOUT"
        )
        parser.add_argument(
            "--admin-host", type=str, default=None, help="default: PROXY_ADMIN_HOST"
        )
        parser.add_argument(
            "--admin-port",
            type=int,
            default=None,
            help="/healthz and /metrics on this port (default: PROXY_ADMIN_PORT; unset = off)",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="N > 1: run N proxy processes on one port (SO_REUSEPORT) under this one, "
            "which forwards SIGTERM/SIGINT to every worker and waits for them",
        )
        parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        if not monkey.is_module_patched("socket"):
            raise CommandError("runproxy must be started through manage.py (gevent patching)")
        host: str = options["host"] or settings.PROXY_HOST
        port: int = settings.PROXY_PORT if options["port"] is None else options["port"]
        drain_timeout: float = options["drain_timeout"]
        if drain_timeout is None:
            drain_timeout = settings.PROXY_DRAIN_TIMEOUT
        admin_port: int | None = options["admin_port"]
        if admin_port is None:
            admin_port = settings.PROXY_ADMIN_PORT
        self._raise_fd_limit()
        if options["workers"] > 1:
            rc = supervise(
                workers=options["workers"],
                host=host,
                port=port,
                drain_timeout=drain_timeout,
                admin_port=options["admin_port"],
                out=self.stdout,
            )
            sys.stdout.flush()
            os._exit(rc)
        listener: Listener = (host, port)
        if options["reuse_port"]:
            listener = reuse_port_listener(host, port)
        admin_host = options["admin_host"] or settings.PROXY_ADMIN_HOST
        stop = Event()
        gevent.signal_handler(signal.SIGTERM, stop.set)
        gevent.signal_handler(signal.SIGINT, stop.set)
        proxy = Proxy.from_settings(
            listener=listener,
            admin_address=None if admin_port is None else (admin_host, admin_port),
        )
        try:
            proxy.run(
                stop, drain_timeout=drain_timeout, worker=options["reuse_port"], say=self._say
            )
        except AdminPortUnavailable as exc:
            raise CommandError(str(exc)) from exc
        # Everything is flushed and closed. Skip interpreter teardown: native threads of
        # librdkafka and the DB pool may still be unwinding, and finalising modules under
        # them has crashed the process (SIGSEGV) after a clean shutdown.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _raise_fd_limit(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
