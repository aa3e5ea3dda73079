"""Sockets under gevent: the one module that relies on gevent's private API.

gevent's public socket API costs a watcher start/stop (an epoll_ctl) and a Timeout
object per wait, and recv(n) allocates n bytes per call; the proxy's hot path instead
reaches into gevent's socket (its raw non-blocking `_sock`, its `_read_event` and
`_write_event` watchers, `_wait`) and its server's accept callback. Everything of that
kind lives here, and `gevent_internals_changed()` says what differs on a gevent version
whose internals are not the ones this module was written against.
"""

from __future__ import annotations

import _socket
import inspect
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

import cython
import gevent
from gevent import get_hub, getcurrent
from gevent._socket3 import _wrefsocket
from gevent.baseserver import BaseServer
from gevent.hub import Hub
from gevent.server import StreamServer
from gevent.socket import socket as GeventSocket
from greenlet import greenlet

from .errors import BadRequest, ClientGone, ProxyError
from .http1 import CRLF, head_end

INFINITY = float("inf")
# A peer address as accept() returns it (typed Any by the standard library's stubs too).
Address = tuple[Any, ...]


class Watcher(Protocol):
    """A libev/libuv watcher of gevent's loop (io, timer, check): what is used of one."""

    active: bool
    callback: object

    def start(self, callback: Callable[..., object], *args: object, **kw: bool) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


# The slots of gevent's socket, all of which ClientSocket.__init__ fills in the way
# gevent's own __init__ does.
GEVENT_SOCKET_SLOTS = frozenset(
    {"hub", "timeout", "_read_event", "_write_event", "_sock", "__weakref__", "_io_refs", "_closed"}
)
# The event loop's methods used here (gevent's ILoop interface).
LOOP_METHODS = ("io", "timer", "check", "closing_fd", "update_now", "now")


def gevent_internals_changed(
    *,
    socket_class: type = GeventSocket,
    server_class: type = BaseServer,
    raw_class: type = _socket.socket,
    loop: object | None = None,
) -> list[str]:
    """How the installed gevent differs from the internals this module relies on, one
    line per difference; empty when nothing does."""
    changes: list[str] = []
    name = f"{socket_class.__module__}.{socket_class.__qualname__}"
    slots: set[str] = set()
    for klass in socket_class.__mro__:
        declared = klass.__dict__.get("__slots__", ())
        slots.update((declared,) if isinstance(declared, str) else declared)
    changes += [f"{name} has no slot {s!r}" for s in sorted(GEVENT_SOCKET_SLOTS - slots)]
    changes += [
        f"{name} has a new slot {s!r}, which ClientSocket.__init__ does not set"
        for s in sorted(slots - GEVENT_SOCKET_SLOTS)
    ]
    if not callable(getattr(socket_class, "_wait", None)):
        changes.append(f"{name} has no _wait(watcher) method")
    if not issubclass(_wrefsocket, raw_class):
        changes.append("gevent._socket3._wrefsocket is no longer a _socket.socket")
    if not callable(getattr(raw_class, "_accept", None)):
        changes.append("_socket.socket has no _accept() method")
    server_name = f"{server_class.__module__}.{server_class.__qualname__}"
    for method in ("_do_read", "_start_accepting_if_started", "start_accepting"):
        if not callable(vars(server_class).get(method)):
            changes.append(f"{server_name} has no {method}() method")
    try:
        source: str | None = inspect.getsource(vars(server_class)["start_accepting"])
    except (KeyError, OSError, TypeError):
        source = None
    if source is not None and "self._do_read" not in source:
        changes.append(f"{server_name}.start_accepting() no longer watches with _do_read")
    loop = get_hub().loop if loop is None else loop
    changes += [
        f"the event loop has no {m}() method"
        for m in LOOP_METHODS
        if not callable(getattr(loop, m, None))
    ]
    return changes


def check_gevent_internals() -> None:
    """RuntimeError naming every difference when gevent's internals are not the ones this
    module was written against (the proxy refuses to start rather than misbehave)."""
    changes = gevent_internals_changed()
    if changes:
        raise RuntimeError(
            f"gevent {gevent.__version__} differs from what proxy_daemon.sockio relies on: "
            + "; ".join(changes)
        )


def accept_descriptor(listener: _socket.socket) -> tuple[int, Address]:
    """accept() on the raw listening socket: the new descriptor and the peer's address,
    without building a socket object for it (ClientSocket does that)."""
    # CPython's accept without the socket object; absent from the standard library stubs.
    return listener._accept()  # type: ignore[attr-defined]


def accept_again_after(server: StreamServer, delay: float) -> Watcher:
    """Have a server that stopped accepting start again after `delay` s, the way gevent
    itself resumes; returns the timer."""
    timer = server.loop.timer(delay)
    timer.start(server._start_accepting_if_started)
    return timer


class ClientSocket(GeventSocket):
    """An accepted client socket: gevent's socket, set up and closed without its
    Python-level generality (family/timeout probing on the way in; a replacement
    "closed" object and deferred-close bookkeeping on the way out, unless another
    greenlet still waits on the socket). Everything else is gevent's socket.
    """

    __slots__ = ()

    def __init__(self, family: int, fd: int, hub: Hub) -> None:
        # What gevent's socket.__init__ does for a descriptor from accept(). gevent ships
        # no type stubs, so its socket's slots are set through an untyped alias of self.
        slots: Any = self
        slots._closed = False
        slots._io_refs = 0
        slots.timeout = None
        slots.hub = hub
        raw = _wrefsocket(family, socket.SOCK_STREAM, 0, fd)
        raw.setblocking(False)
        slots._sock = raw
        loop = hub.loop
        slots._read_event = loop.io(fd, 1)
        slots._write_event = loop.io(fd, 2)

    def close(self) -> None:
        read_event, write_event = self._read_event, self._write_event
        if (
            self._io_refs > 0
            or read_event is None
            or write_event is None
            or read_event.callback is not None
            or write_event.callback is not None
        ):
            super().close()  # closed already, or a waiter to wake first: gevent's way
            return
        slots: Any = self  # gevent's slots (see __init__)
        slots._closed = True
        slots._read_event = slots._write_event = None
        read_event.close()
        write_event.close()
        raw = self._sock
        if self.hub.loop.closing_fd(raw.fileno()):
            # Another watcher on this descriptor was just woken: close once it ran.
            check = self.hub.loop.check()
            check.start(_close_later, raw, check)
        else:
            raw.close()


def _close_later(raw: socket.socket, check: Watcher) -> None:
    try:
        raw.close()
    except OSError:
        pass
    finally:
        check.stop()
        check.close()


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
    """Thrown into a waiting greenlet by its timer; never escapes a wait."""


def _wait_io(sock: GeventSocket, watcher: object, timeout: float | None) -> None:
    """Wait on one of a gevent socket's own watchers; TimeoutError after `timeout`.

    Uses the socket's watcher rather than a new one, so a close() from another greenlet
    (a cut) wakes the waiter instead of leaving it on a dead descriptor. The timeout is a
    bare loop timer that throws into this greenlet (what gevent.Timeout does, minus its
    pure-Python object per wait: this runs twice per proxied request).
    """
    if timeout is None:
        sock._wait(watcher)
        return
    timer = get_hub().loop.timer(max(timeout, 0.0))
    # Counted from a fresh clock: the loop's cached one is stale after blocking code.
    timer.start(getcurrent().throw, _WaitTimedOut, update=True)
    try:
        sock._wait(watcher)
    except _WaitTimedOut:
        raise TimeoutError("timed out") from None
    finally:
        timer.close()


def wait_readable(sock: GeventSocket, timeout: float | None) -> None:
    """Block until sock is readable (or at EOF, or cut); TimeoutError after `timeout`."""
    _wait_io(sock, sock._read_event, timeout)


def raw_socket(sock: GeventSocket) -> socket.socket:
    """The non-blocking socket under gevent's: recv_into() on it never waits."""
    return sock._sock


def peer_idle(sock: GeventSocket) -> bool:
    """True while an idle connection has nothing to read; EOF or stray bytes mean the
    peer closed it or is out of sync."""
    try:
        return not sock._sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False


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

    _deadline: float = cython.declare(object, visibility="public")
    _greenlet: greenlet | None = cython.declare(object, visibility="public")
    _hub: Hub = cython.declare(object, visibility="public")
    _timer: Watcher | None = cython.declare(object, visibility="public")
    _timer_at: float = cython.declare(object, visibility="public")
    _watcher: Watcher = cython.declare(object, visibility="public")

    def __init__(self, sock: GeventSocket) -> None:
        self._hub = get_hub()
        self._watcher = self._hub.loop.io(sock.fileno(), 1)
        self._greenlet = None
        self._timer = None
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


def send_all(sock: GeventSocket, data: bytes | bytearray | memoryview, timeout: float) -> None:
    """sendall whose timeout is per step of progress, not for the whole payload."""
    raw = sock._sock
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
                _wait_io(sock, sock._write_event, timeout)
                continue
            view = view[sent:]
    except OSError as exc:
        # What the kernel already took leaves anyway: metering callers bill it.
        exc.__dict__["bytes_sent"] = len(data) - len(view)
        raise


def bytes_sent(exc: OSError) -> int:
    """How much of its payload a failed send_all handed to the kernel before failing."""
    sent: int = exc.__dict__.get("bytes_sent", 0)
    return sent


READ_CHUNK = 256 * 1024
# One scratch buffer for every read of the process (one thread runs all greenlets, and
# each read is copied out before anything can switch). recv(n) would allocate n bytes
# per call and shrink them after: for n of 256 KiB to 1 MiB that is an mmap, page faults
# and an munmap on every read.
_SCRATCH = bytearray(READ_CHUNK * 4)
_SCRATCH_VIEW = memoryview(_SCRATCH)


def _recv_copy(raw: socket.socket, n: int) -> bytes:
    """recv(n) through the scratch buffer: the bytes read, b"" at EOF."""
    got = raw.recv_into(_SCRATCH, n)
    return _SCRATCH_VIEW[:got].tobytes()


@cython.cclass
class Reader:
    """Buffered reads from a gevent socket that never lose bytes between messages.

    `consumed` counts every byte handed to the caller, so metering can take the exact
    wire size of each message even when requests are pipelined.
    """

    sock: GeventSocket = cython.declare(object, visibility="public")
    buf: bytearray = cython.declare(object, visibility="public")
    consumed: int = cython.declare(object, visibility="public")
    on_eof: type[Exception] = cython.declare(object, visibility="public")
    timeout: float | None = cython.declare(object, visibility="public")
    timeout_error: ProxyError | None = cython.declare(object, visibility="public")
    _waiter: ReadWaiter | None = cython.declare(object, visibility="public")

    def __init__(self, sock: GeventSocket, *, on_eof: type[Exception] = ClientGone) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.consumed = 0
        self.on_eof = on_eof
        self.timeout = None
        self.timeout_error = None
        self._waiter = None

    def _wait(self, timeout: float | None) -> None:
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = ReadWaiter(self.sock)
        waiter.wait(timeout)

    def release(self) -> None:
        """Stop waiting on the socket for good; call before closing it or handing it on."""
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None

    def _recv(self, n: int, timeout: float | None) -> bytes:
        raw = self.sock._sock
        try:
            while True:
                try:
                    return _recv_copy(raw, n)
                except BlockingIOError:
                    self._wait(timeout)
        except TimeoutError:
            if self.timeout_error is not None:
                raise self.timeout_error from None
            raise
        except (ConnectionError, OSError) as exc:
            raise self.on_eof(str(exc)) from exc

    def read_head(
        self,
        *,
        max_bytes: int,
        first_byte_timeout: float,
        head_timeout: float,
        too_slow: ProxyError,
        too_large: ProxyError,
        silent_timeout: ProxyError | None = None,
        wait_first: bool = False,
    ) -> bytes | None:
        """The next message head (up to and including the blank line).

        None when the peer closed before sending any byte of a new message, or stayed
        silent past `first_byte_timeout` and no `silent_timeout` error is given.
        `wait_first`: the peer cannot have answered yet (a response just requested, the
        next request on a keep-alive connection), so skip the read that would only say
        EAGAIN and wait for readability first: one syscall fewer per message.
        """
        deadline: float | None = None
        if not self.buf:
            # The common case: nothing buffered, and one read brings exactly one head.
            try:
                data = self._recv_head(first_byte_timeout, wait_first)
            except TimeoutError:
                if silent_timeout is not None:
                    raise silent_timeout from None
                return None
            except OSError:
                return None
            if not data:
                return None
            end = head_end(data) if data[0] != 13 and data[0] != 10 else None
            if end is not None:
                if end > max_bytes:
                    raise too_large
                self.consumed += end
                if end == len(data):
                    return data
                self.buf += memoryview(data)[end:]  # the body, or a pipelined request
                return data[:end]
            self.buf += data
            deadline = time.monotonic() + head_timeout
        # Leading empty lines before a request are ignored (RFC 9112 §2.2).
        while True:
            while self.buf[:2] == CRLF or self.buf[:1] == b"\n":
                skip = 2 if self.buf[:2] == CRLF else 1
                del self.buf[:skip]
                self.consumed += skip
            end = head_end(self.buf)
            if end is not None:
                if end > max_bytes:
                    raise too_large
                head = bytes(self.buf[:end])
                del self.buf[:end]
                self.consumed += end
                return head
            if len(self.buf) > max_bytes:
                raise too_large
            if deadline is None and self.buf:
                deadline = time.monotonic() + head_timeout
            if deadline is None:
                timeout = first_byte_timeout
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise too_slow
            try:
                data = self._recv_head(timeout)
            except TimeoutError:
                if not self.buf:
                    if silent_timeout is not None:
                        raise silent_timeout from None
                    return None
                raise too_slow from None
            except OSError as exc:
                if not self.buf:
                    return None
                raise self.on_eof(str(exc)) from exc
            if not data:
                if not self.buf:
                    return None
                raise BadRequest("connection closed in the middle of the request head")
            self.buf += data
            if deadline is None:
                deadline = time.monotonic() + head_timeout

    def _recv_head(self, timeout: float, wait_first: bool = False) -> bytes:
        """One recv for a head: straight from the non-blocking socket when data is
        waiting, else wait for readability (ReadWaiter; TimeoutError after timeout)."""
        raw = self.sock._sock
        if wait_first:
            self._wait(timeout)
        while True:
            try:
                return _recv_copy(raw, READ_CHUNK)
            except BlockingIOError:
                self._wait(timeout)

    def read_some(self, limit: int) -> bytes:
        """At most `limit` bytes: buffered ones first, else one recv. EOF raises on_eof."""
        if self.buf:
            data = bytes(self.buf[:limit])
            del self.buf[: len(data)]
        else:
            data = self._recv(min(limit, READ_CHUNK * 4), self.timeout)
            if not data:
                raise self.on_eof("connection closed in the middle of a message body")
        self.consumed += len(data)
        return data

    def read_until_close(self, limit: int) -> bytes:
        """Like read_some, but b"" at EOF instead of raising."""
        if self.buf:
            return self.read_some(limit)
        data = self._recv(min(limit, READ_CHUNK * 4), self.timeout)
        self.consumed += len(data)
        return data

    def readline(self, limit: int, error: type[ProxyError]) -> bytes:
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                if idx + 1 > limit:
                    raise error("chunk framing line too long")
                line = bytes(self.buf[: idx + 1])
                del self.buf[: idx + 1]
                self.consumed += len(line)
                return line
            if len(self.buf) > limit:
                raise error("chunk framing line too long")
            data = self._recv(READ_CHUNK, self.timeout)
            if not data:
                raise self.on_eof("connection closed in the middle of chunked body")
            self.buf += data
