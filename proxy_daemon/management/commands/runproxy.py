"""Run the gevent forward proxy.

manage.py monkey-patches before Django is imported for this command. SIGTERM/SIGINT stop
accepting, let open connections drain up to PROXY_DRAIN_TIMEOUT, flush the meter one last
time, close the reporter and plugins, and exit 0.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import signal
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string


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
        from gevent import monkey

        if not monkey.is_module_patched("socket"):
            raise CommandError("runproxy must be started through manage.py (gevent patching)")
        import gevent
        from gevent.event import Event

        from proxy_daemon.auth import AuthCache, Authenticator, FailureThrottle
        from proxy_daemon.devices import KEY_PREFIX, DeviceGuard
        from proxy_daemon.limits import UserLimitsCache
        from proxy_daemon.metering import Meter, flush
        from proxy_daemon.metrics import ProxyMetrics
        from proxy_daemon.policy import DestinationPolicy
        from proxy_daemon.registry import ConnectionRegistry
        from proxy_daemon.reporters.counting import CountingReporter
        from proxy_daemon.server import ProxyConfig, ProxyServer
        from proxy_daemon.store import DBRunner, credential_lookup, plan_limits

        host = options["host"] or settings.PROXY_HOST
        port = settings.PROXY_PORT if options["port"] is None else options["port"]
        drain_timeout = options["drain_timeout"]
        if drain_timeout is None:
            drain_timeout = settings.PROXY_DRAIN_TIMEOUT
        self._raise_fd_limit()
        if options["workers"] > 1:
            from proxy_daemon.workers import supervise

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
        listener: Any = (host, port)
        if options["reuse_port"]:
            from proxy_daemon.workers import reuse_port_listener

            listener = reuse_port_listener(host, port)

        db = DBRunner(settings.PROXY_DB_THREADS)
        credentials = AuthCache(key=settings.SECRET_KEY.encode(), ttl=settings.PROXY_AUTH_CACHE_TTL)
        authenticator = Authenticator(
            cache=credentials,
            throttle=FailureThrottle(
                limit=settings.PROXY_AUTH_FAIL_LIMIT, window=settings.PROXY_AUTH_FAIL_WINDOW
            ),
            lookup=lambda login, secret: db(credential_lookup, login, secret),
        )
        policy = DestinationPolicy(
            allow_private=settings.PROXY_ALLOW_PRIVATE_DESTINATIONS,
            connect_ports=frozenset(settings.PROXY_ALLOWED_CONNECT_PORTS),
        )
        meter = Meter()
        metrics = ProxyMetrics()
        limits = UserLimitsCache(
            lambda uid: db(plan_limits, uid), ttl=settings.PROXY_USER_LIMITS_TTL
        )
        registry = ConnectionRegistry(limits=limits, credentials=credentials, metrics=metrics)
        server = ProxyServer(
            listener,
            config=ProxyConfig.from_settings(settings),
            authenticator=authenticator,
            policy=policy,
            meter=meter,
            limits=limits,
            registry=registry,
            metrics=metrics,
            devices=self._device_guard(DeviceGuard, KEY_PREFIX),
        )
        reporter = import_string(settings.PROXY_REPORTER)()
        plugins = [import_string(path)(registry) for path in settings.PROXY_CONTROL_PLUGINS]
        counted = CountingReporter(reporter, server.metrics)
        admin = self._start_admin(options, server, reporter, plugins)
        reporter.start()
        for plugin in plugins:
            plugin.start()

        stop = Event()
        gevent.signal_handler(signal.SIGTERM, stop.set)
        gevent.signal_handler(signal.SIGINT, stop.set)

        def meter_loop() -> None:
            while not stop.wait(settings.PROXY_METER_INTERVAL):
                flush(meter, counted)
                server.upstreams.sweep()

        # Everything loaded so far (Django, settings, code) lives for the whole process:
        # move it out of the collector's generations so full collections stay cheap.
        gc.collect()
        gc.freeze()
        server.start()
        flusher = gevent.spawn(meter_loop)
        self.stdout.write(
            # A worker says "ready"; its supervisor says "listening" once all are ready.
            f"goproxy {'worker ready on' if options['reuse_port'] else 'proxy listening on'} "
            f"{host}:{server.server_port} "
            f"(reporter {type(reporter).__name__}, {len(plugins)} control plugin(s))"
        )
        self.stdout.flush()
        stop.wait()
        self.stdout.write("shutting down: draining connections")
        self.stdout.flush()
        cut = server.drain(drain_timeout)
        flusher.kill()
        flush(meter, counted)
        reporter.close(timeout=5.0)
        for plugin in plugins:
            plugin.stop()
        db.close()
        if admin is not None:
            admin.stop(timeout=1.0)
        self.stdout.write(f"proxy stopped ({cut} connection(s) cut at the drain timeout)")
        self.stdout.flush()
        # Everything is flushed and closed. Skip interpreter teardown: native threads of
        # librdkafka and the DB pool may still be unwinding, and finalising modules under
        # them has crashed the process (SIGSEGV) after a clean shutdown.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)

    def _start_admin(
        self, options: dict[str, Any], server: Any, reporter: Any, plugins: list
    ) -> Any:
        """The admin port (/healthz, /metrics), before plugins load, so it can say "starting"."""
        from proxy_daemon.admin_server import AdminApp, admin_server_start, registry_build

        port = options["admin_port"]
        if port is None:
            port = settings.PROXY_ADMIN_PORT
        if port is None:
            return None
        host = options["admin_host"] or settings.PROXY_ADMIN_HOST
        app = AdminApp(
            server=server,
            reporter=reporter,
            plugins=plugins,
            registry=registry_build(server, reporter, plugins),
        )
        try:
            admin = admin_server_start(host, port, app)
        except OSError as exc:
            raise CommandError(f"cannot open the admin port {host}:{port}: {exc}") from exc
        self.stdout.write(f"admin port on {host}:{admin.server_port} (/healthz, /metrics)")
        self.stdout.flush()
        return admin

    def _device_guard(self, guard: Any, prefix: str) -> Any:
        url = settings.PLANS_DEVICE_REDIS_URL
        if not url:
            return None
        import redis

        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        # Keys are per plans database, so deployments (and test runs) sharing a Redis
        # never see each other's users.
        db_name = str(settings.DATABASES["plans"]["NAME"])
        self.stdout.write(f"device limits on (window {settings.PLANS_DEVICE_WINDOW_SECONDS}s)")
        return guard(
            client,
            prefix=f"{prefix}{db_name}:",
            window=settings.PLANS_DEVICE_WINDOW_SECONDS,
            cache_seconds=settings.PLANS_DEVICE_CACHE_SECONDS,
        )

    def _raise_fd_limit(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
