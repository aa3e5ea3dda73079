"""Two-way relay for CONNECT tunnels (gevent portforwarder shape, tuned for throughput).

Each direction waits for readability *without* a buffer, then borrows a 1 MiB buffer
from a shared pool and keeps it only while reads fill it; an idle tunnel holds none
(about 19 KiB of memory per idle tunnel, where two buffers of its own would hold 2 MiB
of resident memory). The timeout is an idle timeout over
both directions: a tunnel is closed only when neither side moved a byte for that long.
Half-close is passed on with shutdown(SHUT_WR).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import gevent

from .limits import Buckets, TokenBucket
from .sockio import BufferPool, bytes_sent, raw_socket, send_all, wait_readable


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
        buckets: Buckets | None = None,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.idle_timeout = idle_timeout
        self.pool = pool
        self.on_up = on_up
        self.on_down = on_down
        self.up_bucket: TokenBucket | None = None
        self.down_bucket: TokenBucket | None = None
        self.set_buckets(buckets)
        self.last_activity = time.monotonic()
        self.closed = False

    def set_buckets(self, buckets: Buckets | None) -> None:
        """The (upload, download) speed buckets; each direction reads them every chunk."""
        self.up_bucket, self.down_bucket = buckets or (None, None)

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
                wait_readable(src, remaining)
                return True
            except TimeoutError:
                continue

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        upward: bool,
    ) -> None:
        raw = raw_socket(src)
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
