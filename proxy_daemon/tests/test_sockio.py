"""sockio: the gevent internals it relies on, and the socket primitives built on them."""

from __future__ import annotations

import gevent
import pytest
from gevent.baseserver import BaseServer
from gevent.socket import socket as GeventSocket

from proxy_daemon import sockio


class GeventInternalsTests:
    def test_the_installed_gevent_has_the_internals_sockio_relies_on(self) -> None:
        changes = sockio.gevent_internals_changed()
        assert changes == [], (
            f"gevent {gevent.__version__} changed what proxy_daemon.sockio relies on: "
            + "; ".join(changes)
        )
        sockio.check_gevent_internals()

    def test_a_changed_socket_is_named_slot_by_slot(self) -> None:
        class Renamed(GeventSocket):
            __slots__ = ("_watchers",)

        class NoWait:
            __slots__ = tuple(sockio.GEVENT_SOCKET_SLOTS - {"_sock"})

        changes = sockio.gevent_internals_changed(socket_class=Renamed)
        assert changes == [
            f"{__name__}.{Renamed.__qualname__} has a new slot '_watchers', which "
            "ClientSocket.__init__ does not set"
        ]
        changes = sockio.gevent_internals_changed(socket_class=NoWait)
        assert f"{__name__}.{NoWait.__qualname__} has no slot '_sock'" in changes
        assert f"{__name__}.{NoWait.__qualname__} has no _wait(watcher) method" in changes

    def test_a_changed_server_and_loop_are_named(self) -> None:
        class Server:
            def start_accepting(self) -> None:
                self._watcher.start(self._on_readable)  # type: ignore[attr-defined]

        changes = sockio.gevent_internals_changed(server_class=Server, loop=object())
        name = f"{__name__}.{Server.__qualname__}"
        assert f"{name} has no _do_read() method" in changes
        assert f"{name} has no _start_accepting_if_started() method" in changes
        assert f"{name}.start_accepting() no longer watches with _do_read" in changes
        assert "the event loop has no closing_fd() method" in changes
        assert sockio.gevent_internals_changed(server_class=BaseServer) == []

    def test_the_proxy_refuses_to_start_on_changed_internals(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sockio, "GEVENT_SOCKET_SLOTS", sockio.GEVENT_SOCKET_SLOTS | {"_x"})
        with pytest.raises(RuntimeError, match=r"differs from .* has no slot '_x'"):
            sockio.check_gevent_internals()
