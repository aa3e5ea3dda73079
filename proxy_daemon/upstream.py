"""Keep-alive connections to origins, pooled per (host, port)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from .errors import BadGateway, GatewayTimeout, OutOfDescriptors
from .policy import DestinationPolicy, connect
from .sockio import Reader, peer_idle

FRESH_SECONDS = 1.0


@dataclass(eq=False)
class Upstream:
    sock: socket.socket
    reader: Reader
    key: tuple[str, int]
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    head_timeout_error: GatewayTimeout = field(
        default_factory=lambda: GatewayTimeout("upstream did not answer in time")
    )
    head_too_large_error: BadGateway = field(
        default_factory=lambda: BadGateway("upstream response head too large")
    )
    body_timeout_error: GatewayTimeout = field(
        default_factory=lambda: GatewayTimeout("upstream timed out")
    )

    def close(self) -> None:
        self.reader.release()
        try:
            self.sock.close()
        except OSError:
            pass


class UpstreamPool:
    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        per_host: int,
        idle_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.policy = policy
        self.per_host = per_host
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], list[Upstream]] = {}

    def acquire(self, host: str, port: int, *, fresh: bool = False) -> Upstream:
        key = (host, port)
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle and not fresh:
            up = idle.pop()
            age = now - up.idle_since
            # A just-released connection skips the liveness syscall: if the origin closed
            # it anyway, the caller retries a body-less request on a fresh connection.
            if age < self.idle_timeout and (age < FRESH_SECONDS or peer_idle(up.sock)):
                up.reused = True
                return up
            up.close()
        sock = self.connect(host, port)
        return Upstream(sock, Reader(sock, on_eof=BadGateway), key)

    def connect(self, host: str, port: int) -> socket.socket:
        """A new connection to host:port; at the descriptor limit the idle pooled
        connections are closed first (they are the cheapest to give up) and it is tried
        once more."""
        try:
            return connect(self.policy, host, port, timeout=self.connect_timeout)[0]
        except OutOfDescriptors:
            if not self.close_all():
                raise
        return connect(self.policy, host, port, timeout=self.connect_timeout)[0]

    def release(self, up: Upstream) -> None:
        if up.reader.buf:
            up.close()  # bytes past the response: the origin is out of sync
            return
        idle = self._idle.setdefault(up.key, [])
        if len(idle) >= self.per_host:
            up.close()
            return
        up.idle_since = time.monotonic()
        up.reused = False
        idle.append(up)

    def sweep(self) -> None:
        """Close pooled connections idle for longer than idle_timeout."""
        now = time.monotonic()
        for key in list(self._idle):
            keep = []
            for up in self._idle[key]:
                if now - up.idle_since < self.idle_timeout:
                    keep.append(up)
                else:
                    up.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def close_all(self) -> int:
        """Close every idle pooled connection; how many there were."""
        closed = 0
        for ups in self._idle.values():
            for up in ups:
                up.close()
                closed += 1
        self._idle.clear()
        return closed
