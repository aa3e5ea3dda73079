"""The contract between the proxy daemon and its plug-ins (reporters, control plugins).

`Reporter` receives per-user byte deltas; `ProxyControl` is what the running server
offers to control plugins (restrictions, cuts, cache invalidation); `ControlPlugin` is
loaded by `runproxy` from `PROXY_CONTROL_PLUGINS`. Nothing here imports Django or gevent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TrafficDelta:
    user_id: int
    bytes_up: int  # client -> destination, wire bytes between client and proxy
    bytes_down: int  # destination -> client


class Reporter(Protocol):
    def start(self) -> None: ...  # before serving

    # On the gevent hub every PROXY_METER_INTERVAL s; must not block.
    def report(self, deltas: list[TrafficDelta]) -> None: ...

    # At shutdown after the final report(); may block up to timeout.
    def close(self, timeout: float) -> None: ...


class ProxyControl(Protocol):  # implemented by the server; handed to control plugins
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
    def __init__(self, control: ProxyControl) -> None: ...

    # Called before the listener accepts; may block briefly to load state.
    def start(self) -> None: ...

    def stop(self) -> None: ...
