"""The proxy's composition root: every piece built from settings, run, and shut down.

`Proxy.from_settings()` builds, from the PROXY_* (and device-limit) settings: the
authenticator (credential cache, failed-login throttle, `store.credential_lookup` in the
DB thread pool), the destination policy, the meter, the plan-limits cache, the
connection registry, the device guard (Redis), the server, the reporter
(PROXY_REPORTER, counted for /metrics), the control plugins (PROXY_CONTROL_PLUGINS, each
given the registry) and the admin port. `Proxy.run()` serves until its stop event is
set, then drains the connections, hands the meter over one last time and closes
everything. `manage.py runproxy` only parses its options and calls these two.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from django.conf import settings
from django.utils.module_loading import import_string
from gevent.event import Event
from gevent.pywsgi import WSGIServer
from redis import Redis

from .admin_server import AdminApp, admin_server_start, registry_build
from .auth import AuthCache, Authenticator, FailureThrottle
from .devices import KEY_PREFIX, DeviceGuard
from .hooks import ControlPlugin, ControlPluginFactory, Reporter
from .limits import UserLimitsCache
from .metering import Meter, flush
from .metrics import ProxyMetrics
from .policy import DestinationPolicy
from .registry import ConnectionRegistry
from .reporters.counting import CountingReporter
from .server import Listener, ProxyConfig, ProxyServer
from .sockio import check_gevent_internals
from .store import DBRunner, credential_lookup, plan_limits

logger = logging.getLogger(__name__)

REPORTER_CLOSE_TIMEOUT = 5.0
ADMIN_STOP_TIMEOUT = 1.0


class AdminPortUnavailable(Exception):
    """The admin port could not be opened; the message says which and why."""


def proxy_config() -> ProxyConfig:
    return ProxyConfig(
        max_connections=settings.PROXY_MAX_CONNECTIONS,
        max_header_bytes=settings.PROXY_MAX_HEADER_BYTES,
        max_header_count=settings.PROXY_MAX_HEADER_COUNT,
        header_timeout=settings.PROXY_HEADER_TIMEOUT,
        keepalive_timeout=settings.PROXY_KEEPALIVE_TIMEOUT,
        body_timeout=settings.PROXY_BODY_TIMEOUT,
        connect_timeout=settings.PROXY_CONNECT_TIMEOUT,
        upstream_timeout=settings.PROXY_UPSTREAM_TIMEOUT,
        tunnel_idle_timeout=settings.PROXY_TUNNEL_IDLE_TIMEOUT,
        relay_buffer_bytes=settings.PROXY_RELAY_BUFFER_BYTES,
        relay_buffer_pool=settings.PROXY_RELAY_BUFFER_POOL,
        upstream_pool_per_host=settings.PROXY_UPSTREAM_POOL_PER_HOST,
        upstream_pool_idle=settings.PROXY_UPSTREAM_POOL_IDLE,
        via_name=settings.PROXY_VIA_NAME,
    )


def device_guard() -> DeviceGuard | None:
    """The shared device-limit guard, or None when PLANS_DEVICE_REDIS_URL is empty."""
    url = settings.PLANS_DEVICE_REDIS_URL
    if not url:
        return None
    client = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    # Keys are per plans database, so deployments (and test runs) sharing a Redis never
    # see each other's users.
    db_name = str(settings.DATABASES["plans"]["NAME"])
    logger.info("device limits on (window %ss)", settings.PLANS_DEVICE_WINDOW_SECONDS)
    return DeviceGuard(
        client,
        prefix=f"{KEY_PREFIX}{db_name}:",
        window=settings.PLANS_DEVICE_WINDOW_SECONDS,
        cache_seconds=settings.PLANS_DEVICE_CACHE_SECONDS,
    )


@dataclass(eq=False)
class Proxy:
    """A built proxy: its server and everything around it, not yet started."""

    server: ProxyServer
    meter: Meter
    reporter: Reporter  # the configured one
    counted: CountingReporter  # the same, counting the bytes for /metrics
    plugins: list[ControlPlugin]
    db: DBRunner
    admin_address: tuple[str, int] | None = None
    meter_interval: float = 1.0
    admin: WSGIServer | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, *, listener: Listener, admin_address: tuple[str, int] | None) -> Proxy:
        check_gevent_internals()
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
        limits = UserLimitsCache(
            lambda uid: db(plan_limits, uid), ttl=settings.PROXY_USER_LIMITS_TTL
        )
        metrics = ProxyMetrics()
        registry = ConnectionRegistry(limits=limits, credentials=credentials, metrics=metrics)
        meter = Meter()
        server = ProxyServer(
            listener,
            config=proxy_config(),
            authenticator=authenticator,
            policy=policy,
            meter=meter,
            limits=limits,
            registry=registry,
            metrics=metrics,
            devices=device_guard(),
        )
        reporter: Reporter = import_string(settings.PROXY_REPORTER)()
        factories: list[ControlPluginFactory] = [
            import_string(path) for path in settings.PROXY_CONTROL_PLUGINS
        ]
        return cls(
            server=server,
            meter=meter,
            reporter=reporter,
            counted=CountingReporter(reporter, metrics),
            plugins=[factory(registry) for factory in factories],
            db=db,
            admin_address=admin_address,
            meter_interval=settings.PROXY_METER_INTERVAL,
        )

    def run(
        self, stop: Event, *, drain_timeout: float, worker: bool, say: Callable[[str], None]
    ) -> int:
        """Serve until `stop` is set, then shut down; how many connections had to be cut
        at the drain timeout. AdminPortUnavailable before anything else is started."""
        server = self.server
        self._start_admin(say)  # first, so /healthz can say "starting"
        self.counted.start()
        for plugin in self.plugins:
            plugin.start()
        # Everything loaded so far (Django, settings, code) lives for the whole process:
        # move it out of the collector's generations so full collections stay cheap.
        gc.collect()
        gc.freeze()
        server.start()
        flusher = gevent.spawn(self._meter_loop, stop)
        # A worker says "ready"; its supervisor says "listening" once all are ready.
        say(
            f"goproxy {'worker ready on' if worker else 'proxy listening on'} "
            f"{server.server_host}:{server.server_port} "
            f"(reporter {type(self.reporter).__name__}, {len(self.plugins)} control plugin(s))"
        )
        stop.wait()
        say("shutting down: draining connections")
        cut = server.drain(drain_timeout)
        flusher.kill()
        flush(self.meter, self.counted)
        self.counted.close(timeout=REPORTER_CLOSE_TIMEOUT)
        for plugin in self.plugins:
            plugin.stop()
        self.db.close()
        if self.admin is not None:
            self.admin.stop(timeout=ADMIN_STOP_TIMEOUT)
        say(f"proxy stopped ({cut} connection(s) cut at the drain timeout)")
        return cut

    def _meter_loop(self, stop: Event) -> None:
        while not stop.wait(self.meter_interval):
            flush(self.meter, self.counted)
            self.server.upstreams.sweep()

    def _start_admin(self, say: Callable[[str], None]) -> None:
        """The admin port (/healthz, /metrics), when an address is configured."""
        if self.admin_address is None:
            return
        host, port = self.admin_address
        app = AdminApp(
            server=self.server,
            reporter=self.reporter,
            plugins=self.plugins,
            registry=registry_build(self.server, self.reporter, self.plugins),
        )
        try:
            self.admin = admin_server_start(host, port, app)
        except OSError as exc:
            raise AdminPortUnavailable(f"cannot open the admin port {host}:{port}: {exc}") from exc
        say(f"admin port on {host}:{self.admin.server_port} (/healthz, /metrics)")
