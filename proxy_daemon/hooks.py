"""The contract between the proxy daemon and its plug-ins (reporters, control plugins).

`Reporter` receives per-user byte deltas (`PROXY_REPORTER`); `ProxyControl` is what the
running proxy offers to control plugins (restrictions, throttles, cache invalidation:
registry.ConnectionRegistry); a `ControlPlugin` is built as `cls(control)` for each of
`PROXY_CONTROL_PLUGINS`. Nothing here imports Django or gevent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TrafficDelta:
    user_id: int
    bytes_up: int  # client -> destination, wire bytes between client and proxy
    bytes_down: int  # destination -> client


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """How a reporter that sends the deltas to a broker is doing (/healthz, /metrics)."""

    connected: bool  # a broker connection is up, or an event was acknowledged recently
    delivered: int  # events the broker acknowledged
    queue: dict[str, int]  # events not yet acknowledged, by stage
    spool_dir: Path  # where undelivered deltas wait across restarts


class Reporter(Protocol):
    def start(self) -> None: ...  # before serving

    # On the gevent hub every PROXY_METER_INTERVAL s; must not block.
    def report(self, deltas: list[TrafficDelta]) -> None: ...

    # At shutdown after the final report(); may block up to timeout.
    def close(self, timeout: float) -> None: ...

    # The broker delivery state; None for a reporter that keeps the deltas on this host.
    def delivery(self) -> DeliveryState | None: ...


class ProxyControl(Protocol):  # registry.ConnectionRegistry; handed to control plugins
    # Add to the restricted set AND cut open connections (<1 s).
    def restrict(self, user_id: int, reason: str) -> None: ...

    def lift(self, user_id: int) -> None: ...  # remove from restricted set

    def restricted(self) -> dict[int, str]: ...  # current restricted set (user_id -> reason)

    # Drop auth-cache entries at once.
    def invalidate_credentials(
        self, *, user_id: int | None = None, login: str | None = None
    ) -> None: ...

    # Drop cached plan limits (speed/connections) for a user.
    def refresh_user_limits(self, user_id: int) -> None: ...

    # Hold a user to speed_bps on open and new connections; None ends the throttle.
    def throttle(self, user_id: int, speed_bps: int | None) -> None: ...


class ControlPlugin(Protocol):
    # For /healthz and /metrics: the start-up state (e.g. a restriction snapshot) is
    # applied, so the proxy refuses nobody it should not admit (unavailable until then);
    # the plugin follows its event stream (degraded otherwise); events applied so far.
    loaded: bool
    streaming: bool
    applied: int

    # Called before the listener accepts; may block briefly to load state.
    def start(self) -> None: ...

    def stop(self) -> None: ...


# A ControlPlugin class: built with the proxy's control.
ControlPluginFactory = Callable[[ProxyControl], ControlPlugin]
