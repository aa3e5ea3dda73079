"""Two-way relay for CONNECT tunnels (gevent portforwarder shape, tuned for throughput).

Each direction waits for readability *without* a buffer, then borrows a 1 MiB buffer
from a shared pool and keeps it only while reads fill it; an idle tunnel holds none
(reference/perf.md §4: ~19 KiB per idle tunnel). The timeout is an idle timeout over
both directions: a tunnel is closed only when neither side moved a byte for that long.
Half-close is passed on with shutdown(SHUT_WR).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import cython
import gevent
from gevent import get_hub, getcurrent

from .limits import TokenBucket

INFINITY = float("inf")


class BufferPool:
    """Reusable bytearrays; at most `keep` are retained when traffic calms down."""

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self.keep = keep
        self._free: list[bytearray] = []

    def take(self) -> bytearray:
        return self._free.pop() if self._free else bytearray(self.size)

    def give(self, buf: bytearray) -> None:
        if len(self._free) < self.keep:
            self._free.append(buf)


class _WaitTimedOut(Exception):
    """Thrown into a waiting greenlet by its timer; never escapes wait_io."""


def wait_io(sock: socket.socket, watcher: object, timeout: float | None) -> None:
    """Wait on one of a gevent socket's own watchers; TimeoutError after `timeout`.

    Uses the socket's watcher rather than a new one, so a close() from another greenlet
    (a cut) wakes the waiter instead of leaving it on a dead descriptor. The timeout is a
    bare loop timer that throws into this greenlet (what gevent.Timeout does, minus its
    pure-Python object per wait: this runs twice per proxied request).
    """
    if timeout is None:
        sock._wait(watcher)  # type: ignore[attr-defined]
        return
    timer = get_hub().loop.timer(max(timeout, 0.0))
    # Counted from a fresh clock: the loop's cached one is stale after blocking code.
    timer.start(getcurrent().throw, _WaitTimedOut, update=True)
    try:
        sock._wait(watcher)  # type: ignore[attr-defined]
    except _WaitTimedOut:
        raise TimeoutError("timed out") from None
    finally:
        timer.close()


@cython.cclass
class ReadWaiter:
    """Waits for a socket to become readable with a read watcher that stays started
    between waits, and one timer re-armed lazily.

    gevent starts and stops a socket's watcher around every wait, and libev turns each
    start into an epoll_ctl; a keep-alive connection waits twice per proxied request, so
    that is two syscalls per request. This watcher is stopped only when it fires while
    nobody waits (unexpected bytes or EOF), so it cannot spin. `close()` must be called
    before the socket is closed. A cut (shutdown) wakes a waiter like any EOF.

    Timeouts are deadlines: a wait only records when it would time out. The timer is
    armed when none is pending early enough, and when it fires it times out the waiter
    whose deadline has passed, or re-arms for what is left, or (nobody waiting) stops.
    So a connection that waits with the same timeout over and over creates and starts
    a timer about once per timeout period, not once per wait.
    """

    _deadline = cython.declare(object, visibility="public")
    _greenlet = cython.declare(object, visibility="public")
    _hub = cython.declare(object, visibility="public")
    _timer = cython.declare(object, visibility="public")
    _timer_at = cython.declare(object, visibility="public")
    _watcher = cython.declare(object, visibility="public")

    def __init__(self, sock: socket.socket) -> None:
        self._hub = get_hub()
        self._watcher = self._hub.loop.io(sock.fileno(), 1)
        self._greenlet: Any = None
        self._timer: Any = None
        self._timer_at = 0.0  # loop time the pending timer fires at
        self._deadline = 0.0  # loop time the current wait times out at

    def _ready(self) -> None:
        greenlet = self._greenlet
        if greenlet is None:
            self._watcher.stop()
        else:
            self._greenlet = None
            greenlet.switch()

    def _arm(self, delay: float) -> None:
        loop = self._hub.loop
        if self._timer is not None:
            self._timer.close()
        # Unreferenced: a timer left pending between waits never keeps the loop alive.
        self._timer = timer = loop.timer(delay, ref=False)
        self._timer_at = loop.now() + delay
        timer.start(self._expired)

    def _expired(self) -> None:
        greenlet = self._greenlet
        if greenlet is None:
            return  # nobody waits: the next wait with a timeout arms it again
        left = self._deadline - self._hub.loop.now()
        if left > 0:
            self._arm(left)
        else:
            self._greenlet = None
            greenlet.throw(_WaitTimedOut)

    def wait(self, timeout: float | None) -> None:
        """Block until readable; TimeoutError after `timeout` seconds (None: no limit)."""
        watcher = self._watcher
        if not watcher.active:
            watcher.start(self._ready)
        self._greenlet = getcurrent()
        if timeout is None:
            self._deadline = INFINITY
        else:
            timeout = max(timeout, 0.0)
            loop = self._hub.loop
            # The loop's clock is read at the top of each iteration; after a long stretch
            # without one (a busy iteration, blocking code) it is stale, and a deadline
            # and timer counted from it would fire early.
            loop.update_now()
            deadline = self._deadline = loop.now() + timeout
            timer = self._timer
            if timer is None or not timer.active or self._timer_at > deadline:
                self._arm(timeout)
        try:
            self._hub.switch()
        except _WaitTimedOut:
            raise TimeoutError("timed out") from None
        finally:
            self._greenlet = None

    def close(self) -> None:
        self._watcher.stop()
        self._watcher.close()
        if self._timer is not None:
            self._timer.close()
            self._timer = None


def send_all(sock: socket.socket, data: bytes | bytearray | memoryview, timeout: float) -> None:
    """sendall whose timeout is per step of progress, not for the whole payload."""
    raw = sock._sock  # type: ignore[attr-defined]  # the non-blocking socket under gevent's
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    try:
        while view:
            try:
                sent = raw.send(view)
            except BlockingIOError:
                wait_io(sock, sock._write_event, timeout)  # type: ignore[attr-defined]
                continue
            view = view[sent:]
    except OSError as exc:
        # What the kernel already took leaves anyway: metering callers bill it.
        exc.bytes_sent = len(data) - len(view)  # type: ignore[attr-defined]
        raise


def bytes_sent(exc: OSError) -> int:
    """How much of its payload a failed send_all handed to the kernel before failing."""
    return getattr(exc, "bytes_sent", 0)


class Tunnel:
    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        *,
        idle_timeout: float,
        pool: BufferPool,
        on_up: Callable[[int], None],
        on_down: Callable[[int], None],
        up_bucket: TokenBucket | None = None,
        down_bucket: TokenBucket | None = None,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.idle_timeout = idle_timeout
        self.pool = pool
        self.on_up = on_up
        self.on_down = on_down
        self.up_bucket = up_bucket
        self.down_bucket = down_bucket
        self.last_activity = time.monotonic()
        self.closed = False

    def run(self) -> None:
        # Waits and sends carry their own timeouts; the sockets' shared timeout stays off.
        self.client.settimeout(None)
        self.upstream.settimeout(None)
        # The calling greenlet pumps client -> upstream itself; one extra greenlet does the
        # other direction (one greenlet fewer per tunnel keeps idle tunnels small).
        down = gevent.spawn(self._pump, self.upstream, self.client, False)
        try:
            self._pump(self.client, self.upstream, True)
            down.join()
        finally:
            down.kill(block=False)

    def abort(self) -> None:
        """Wake both directions and end the tunnel (used by cuts and idle expiry)."""
        self.closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _wait_readable(self, src: socket.socket) -> bool:
        """Block until src is readable; False when the whole tunnel went idle."""
        while True:
            remaining = self.last_activity + self.idle_timeout - time.monotonic()
            if remaining <= 0:
                return False
            try:
                wait_io(src, src._read_event, remaining)  # type: ignore[attr-defined]
                return True
            except TimeoutError:
                continue

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        upward: bool,
    ) -> None:
        raw = src._sock  # type: ignore[attr-defined]  # non-blocking socket under gevent's
        count = self.on_up if upward else None
        count_sent = None if upward else self.on_down
        buf: bytearray | None = None
        try:
            while not self.closed:
                if buf is None:
                    try:
                        readable = self._wait_readable(src)
                    except OSError:  # closed by a cut in another greenlet
                        readable = False
                    if not readable:
                        self.abort()
                        return
                    buf = self.pool.take()
                # Read the bucket every chunk: a throttle can start or end mid-tunnel.
                bucket = self.up_bucket if upward else self.down_bucket
                limit = len(buf) if bucket is None else min(len(buf), bucket.max_read)
                try:
                    n = raw.recv_into(buf, limit)
                except BlockingIOError:
                    self.pool.give(buf)
                    buf = None
                    continue
                except OSError:
                    self.abort()
                    return
                if n == 0:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        self.abort()
                    return
                self.last_activity = time.monotonic()
                if count is not None:
                    count(n)
                if bucket is not None:
                    # Pay before forwarding, so the bytes leave at the plan's rate.
                    delay = bucket.consume(n)
                    if delay > 0:
                        gevent.sleep(delay)
                try:
                    send_all(dst, memoryview(buf)[:n], self.idle_timeout)
                except OSError as exc:
                    if count_sent is not None:
                        count_sent(bytes_sent(exc))
                    self.abort()
                    return
                if count_sent is not None:
                    count_sent(n)
                self.last_activity = time.monotonic()
                if n < limit:
                    # Drained what was there: give the buffer back before waiting again.
                    self.pool.give(buf)
                    buf = None
        finally:
            if buf is not None:
                self.pool.give(buf)
