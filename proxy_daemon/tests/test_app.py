"""The composition root: what Proxy.from_settings builds, and the daemon's clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from gevent.event import Event

from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import E2E, ProxyProcess, proxied_get
from proxy_daemon.app import AdminPortUnavailable, Proxy
from proxy_daemon.devices import DeviceGuard
from proxy_daemon.reporters.local import FileReporter

from .control_plugin import LineControlPlugin

LINE_PLUGIN = "proxy_daemon.tests.control_plugin.LineControlPlugin"


@pytest.fixture
def built() -> Iterator[list[Proxy]]:
    """Proxies built by a test; their DB thread pools are closed afterwards."""
    proxies: list[Proxy] = []
    yield proxies
    for proxy in proxies:
        proxy.db.close()


class FromSettingsTests:
    def test_device_limits_need_redis_not_a_control_plugin(self, built: list[Proxy]) -> None:
        with override_settings(PROXY_CONTROL_PLUGINS=[]):
            built.append(Proxy.from_settings(listener=("127.0.0.1", 0), admin_address=None))
        assert isinstance(built[-1].server.devices, DeviceGuard)
        assert built[-1].plugins == []
        with override_settings(PLANS_DEVICE_REDIS_URL="", PROXY_CONTROL_PLUGINS=[LINE_PLUGIN]):
            built.append(Proxy.from_settings(listener=("127.0.0.1", 0), admin_address=None))
        assert built[-1].server.devices is None

    def test_plugins_control_the_registry_and_the_reporter_is_counted(
        self, built: list[Proxy], tmp_path: Path
    ) -> None:
        with override_settings(
            PROXY_CONTROL_PLUGINS=[LINE_PLUGIN],
            PROXY_REPORTER="proxy_daemon.reporters.local.FileReporter",
            PROXY_METER_FILE=str(tmp_path / "meter.jsonl"),
        ):
            proxy = Proxy.from_settings(listener=("127.0.0.1", 0), admin_address=None)
        built.append(proxy)
        [plugin] = proxy.plugins
        assert isinstance(plugin, LineControlPlugin)
        assert plugin.control is proxy.server.registry
        assert isinstance(proxy.reporter, FileReporter)
        assert proxy.counted.reporter is proxy.reporter
        assert proxy.counted.metrics is proxy.server.metrics

    def test_a_taken_admin_port_stops_the_start_before_anything_runs(
        self, built: list[Proxy], tmp_path: Path
    ) -> None:
        meter_file = tmp_path / "meter.jsonl"
        taken = socket.create_server(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        try:
            with override_settings(
                PROXY_REPORTER="proxy_daemon.reporters.local.FileReporter",
                PROXY_METER_FILE=str(meter_file),
            ):
                proxy = Proxy.from_settings(
                    listener=("127.0.0.1", 0), admin_address=("127.0.0.1", port)
                )
            built.append(proxy)
            said: list[str] = []
            with pytest.raises(AdminPortUnavailable, match=f"admin port 127.0.0.1:{port}"):
                proxy.run(Event(), drain_timeout=0, worker=False, say=said.append)
        finally:
            taken.close()
        assert said == []
        assert not meter_file.exists()  # the reporter was never started
        assert not proxy.server.started


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@E2E
class ShutdownTests:
    def test_sigterm_drains_in_flight_request_flushes_meter_and_exits_0(
        self, proxy_users, origin, tmp_path
    ) -> None:
        # Its own daemon, metering only at shutdown (interval 60 s), so the final flush
        # is what delivers the bytes.
        proc = ProxyProcess(
            tmp_path, {"PROXY_METER_INTERVAL": "60", "PROXY_DRAIN_TIMEOUT": "5"},
            "goproxy_site.settings.test",
        ).start()  # fmt: skip
        try:
            u = proxy_users["px-alice"]
            idle = proxied_get(proc, u, origin.url("/hello"))
            assert idle.response().status == 200
            slow = proxied_get(proc, u, origin.url("/slow?s=1.5"))
            time.sleep(0.3)
            assert proc.proc is not None
            os.kill(proc.proc.pid, signal.SIGTERM)
            # The listener closes at once: new connections are refused while old ones drain.
            assert wait_for(lambda: _refused(proc.port), 2)
            r = slow.response()
            assert r.status == 200 and r.body == b"late"
            idle.sock.settimeout(5)
            assert idle.recv_until_close() == b""
            assert proc.proc.wait(timeout=15) == 0
            sent = idle.sent + slow.sent
            received = idle.received + slow.received
            assert proc.meter_totals()[u.user_id] == (sent, received)
            assert "proxy stopped" in proc.log()
        finally:
            proc.stop()
