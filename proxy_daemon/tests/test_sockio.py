"""sockio: the gevent internals it relies on, and the socket primitives built on them."""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket
from gevent.baseserver import BaseServer
from gevent.socket import socket as GeventSocket

from proxy_daemon import sockio
from proxy_daemon.errors import BadRequest, ClientGone, HeadersTooLarge, RequestTimeout
from proxy_daemon.sockio import ClientSocket, ReadWaiter, bytes_sent, send_all


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
            def watch(self, callback: object) -> None: ...

            def _on_readable(self) -> None: ...

            def start_accepting(self) -> None:
                self.watch(self._on_readable)

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


class ClientSocketTests:
    """The accepted-socket fast path: closing must behave as gevent's close does."""

    def test_close_wakes_a_greenlet_waiting_on_it(self) -> None:
        a, b = socket.socketpair()
        sock = ClientSocket(b.family, b.detach(), gevent.get_hub())
        outcome: list[Any] = []

        def reader() -> None:
            try:
                outcome.append(sock.recv(10))
            except OSError as exc:
                outcome.append(exc)

        g = gevent.spawn(reader)
        gevent.sleep(0.05)  # the reader waits on the socket's read watcher
        sock.close()
        g.join(timeout=5)
        assert len(outcome) == 1 and isinstance(outcome[0], OSError)  # woken, not hung
        a.close()

    def test_close_releases_the_descriptor(self) -> None:
        a, b = socket.socketpair()
        sock = ClientSocket(b.family, b.detach(), gevent.get_hub())
        fd = sock.fileno()
        a.sendall(b"hi")
        assert sock.recv(10) == b"hi"
        sock.close()
        sock.close()  # twice is harmless
        assert sock._read_event is None and sock._write_event is None
        with pytest.raises(OSError):
            socket.socket(fileno=fd).close()  # the descriptor is gone, not leaked
        assert a.recv(10) == b""  # the peer sees EOF
        a.close()


class ReadWaiterTests:
    """The persistent read watcher behind every head and body read of the proxy."""

    @pytest.fixture
    def pair(self) -> Iterator[tuple[Any, Any, Any]]:
        """A connected gevent socket pair and a ReadWaiter on the second socket."""
        a, b = gsocket.socketpair()
        waiter = ReadWaiter(b)
        yield a, b, waiter
        waiter.close()
        a.close()
        b.close()

    def test_wakes_on_data_times_out_and_wakes_on_shutdown(self, pair) -> None:
        a, b, waiter = pair
        gevent.spawn_later(0.05, a.send, b"x")
        waiter.wait(5.0)
        assert b.recv(10) == b"x"
        with pytest.raises(TimeoutError):
            waiter.wait(0.05)
        gevent.spawn_later(0.05, a.shutdown, socket.SHUT_RDWR)
        waiter.wait(5.0)  # EOF counts as readable: a cut wakes the reader
        assert b.recv(10) == b""

    def test_stops_when_it_fires_with_nobody_waiting(self, pair) -> None:
        a, b, waiter = pair
        gevent.spawn_later(0.01, a.send, b"1")
        waiter.wait(5.0)
        b.recv(10)
        assert waiter._watcher.active  # kept started between waits: no epoll_ctl
        a.send(b"unexpected")  # nobody reads it: the watcher must not spin
        gevent.sleep(0.05)
        assert not waiter._watcher.active
        waiter.wait(5.0)  # the next wait starts it again and sees the bytes
        assert b.recv(100) == b"unexpected"

    def test_timeouts_are_deadlines_on_one_lazily_rearmed_timer(self, pair) -> None:
        a, b, waiter = pair
        for _ in range(3):  # answered waits with the same timeout share one timer
            gevent.spawn_later(0.005, a.send, b"x")
            waiter.wait(0.1)
            b.recv(10)
        timer = waiter._timer
        assert timer is not None and timer.active  # still pending from the first wait
        # A longer wait behind it: the early timer re-arms for what is left.
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            waiter.wait(0.3)
        assert 0.25 <= time.monotonic() - t0 < 1.0
        # A shorter wait than the pending timer: armed earlier, not missed.
        gevent.spawn_later(0.005, a.send, b"y")
        waiter.wait(10.0)  # leaves a timer pending for ~10 s
        b.recv(10)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            waiter.wait(0.05)
        assert time.monotonic() - t0 < 1.0

    def test_a_stale_loop_clock_does_not_shorten_a_wait(self, pair) -> None:
        a, b, waiter = pair
        time.sleep(0.3)  # blocking: the hub does not run, its cached clock goes stale
        gevent.spawn_later(0.1, a.send, b"x")
        waiter.wait(0.25)  # counted from now, not from the clock 0.3 s ago
        assert b.recv(10) == b"x"

    def test_a_timer_firing_with_nobody_waiting_throws_nothing(self, pair) -> None:
        a, b, waiter = pair
        gevent.spawn_later(0.005, a.send, b"x")
        waiter.wait(0.05)
        b.recv(10)
        gevent.sleep(0.1)  # the timer fires while nobody waits
        assert not waiter._timer.active
        gevent.spawn_later(0.01, a.send, b"z")
        waiter.wait(5.0)  # a later wait is unaffected
        assert b.recv(10) == b"z"


class SendAllTests:
    """send_all is what metering trusts: on failure it tells how much already left."""

    def test_a_failed_send_reports_what_the_kernel_took(self) -> None:
        a, b = gsocket.socketpair()
        try:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            payload = b"x" * (8 << 20)  # far more than both socket buffers hold
            with pytest.raises(TimeoutError) as caught:
                send_all(a, payload, 0.05)  # nobody reads b: the send stalls
            taken = bytes_sent(caught.value)
            assert 0 < taken < len(payload)
            received = 0
            b.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while chunk := b._sock.recv(1 << 20):
                    received += len(chunk)
            assert received == taken  # exactly what reached the peer
        finally:
            a.close()
            b.close()

    def test_a_reset_after_partial_sends_reports_them(self) -> None:
        class Raw:
            """Takes 3 bytes per send, then the peer resets."""

            def __init__(self) -> None:
                self.calls = 0

            def send(self, data: object) -> int:
                self.calls += 1
                if self.calls > 2:
                    raise ConnectionResetError(errno.ECONNRESET, "reset by peer")
                return 3

        class Sock:
            _sock = Raw()

        with pytest.raises(ConnectionResetError) as caught:
            send_all(Sock(), b"0123456789", 1.0)
        assert bytes_sent(caught.value) == 6

    def test_an_error_before_any_progress_reports_zero(self) -> None:
        a, b = gsocket.socketpair()
        b.close()
        with pytest.raises(OSError) as caught:
            send_all(a, b"x" * 100, 1.0)
        assert bytes_sent(caught.value) == 0
        a.close()


class ReaderTests:
    """Buffered reads: exact byte accounting across pipelined messages."""

    @pytest.fixture
    def pair(self) -> Iterator[tuple[Any, sockio.Reader]]:
        a, b = gsocket.socketpair()
        reader = sockio.Reader(b)
        yield a, reader
        reader.release()
        a.close()
        b.close()

    def head(self, reader: sockio.Reader, timeout: float = 5.0, **kwargs: Any) -> bytes | None:
        return reader.read_head(
            max_bytes=1024,
            first_byte_timeout=timeout,
            head_timeout=timeout,
            too_slow=RequestTimeout("too slow"),
            too_large=HeadersTooLarge("too large"),
            **kwargs,
        )

    def test_pipelined_messages_keep_their_bytes(self, pair) -> None:
        a, reader = pair
        first, second = b"GET http://a/ HTTP/1.1\r\n\r\n", b"POST http://b/ HTTP/1.1\r\n\r\n"
        a.sendall(first + second + b"body")
        assert self.head(reader) == first
        assert reader.consumed == len(first)
        assert self.head(reader) == second
        assert reader.read_some(100) == b"body"
        assert reader.consumed == len(first + second + b"body")

    def test_silence_and_eof_before_a_message(self, pair) -> None:
        a, reader = pair
        assert self.head(reader, timeout=0.05) is None  # an idle keep-alive connection
        with pytest.raises(RequestTimeout, match="nothing said"):
            self.head(reader, timeout=0.05, silent_timeout=RequestTimeout("nothing said"))
        a.shutdown(socket.SHUT_WR)
        assert self.head(reader) is None  # closed between messages

    def test_eof_inside_a_head_is_an_error(self, pair) -> None:
        a, reader = pair
        a.sendall(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(BadRequest, match="in the middle of the request head"):
            self.head(reader)

    def test_eof_inside_a_body_is_an_error(self, pair) -> None:
        a, reader = pair
        a.sendall(b"PUT http://a/ HTTP/1.1\r\nContent-Length: 9\r\n\r\nab")
        a.shutdown(socket.SHUT_WR)
        assert self.head(reader) is not None
        assert reader.read_some(9) == b"ab"
        with pytest.raises(ClientGone, match="in the middle of a message body"):
            reader.read_some(7)

    def test_a_head_larger_than_the_limit_is_refused(self, pair) -> None:
        a, reader = pair
        a.sendall(b"GET http://a/ HTTP/1.1\r\nX: " + b"x" * 2000 + b"\r\n\r\n")
        with pytest.raises(HeadersTooLarge):
            self.head(reader)


class BufferPoolTests:
    def test_buffers_are_reused_and_at_most_keep_are_retained(self) -> None:
        pool = sockio.BufferPool(16, keep=1)
        a, b = pool.take(), pool.take()
        assert len(a) == len(b) == 16 and a is not b
        pool.give(a)
        pool.give(b)  # beyond keep: dropped
        assert pool.take() is a
        assert pool.take() is not b
