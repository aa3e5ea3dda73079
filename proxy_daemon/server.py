"""The proxy server: one greenlet per client connection (gevent StreamServer).

`ProxyServer.handle()` reads requests one after another from a buffered reader (so
pipelined requests keep their bytes), authorises each one, then either forwards it
over a pooled keep-alive upstream connection or opens a CONNECT tunnel. Every failure
is a ProxyError that renders its own response.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cython
import gevent
from gevent import get_hub, getcurrent
from gevent.server import StreamServer
from greenlet import GreenletExit, greenlet

from .auth import Authenticator, AuthMemo, Principal
from .devices import DeviceGuard
from .errors import (
    BadGateway,
    BadRequest,
    ClientGone,
    Forbidden,
    HeadersTooLarge,
    InternalError,
    ProxyAuthRequired,
    ProxyError,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
)
from .http1 import (
    NO_BODY,
    BodyFraming,
    Request,
    build_client_response_head,
    build_upstream_request,
    forwardable,
    iter_chunked,
    iter_length,
    parse_request_head,
    parse_response_head,
    request_framing,
    response_framing,
)
from .limits import Buckets, UserLimitsCache
from .metering import Meter
from .metrics import ProxyMetrics
from .policy import DestinationPolicy
from .registry import ConnectionRegistry
from .sockio import (
    Address,
    BufferPool,
    ClientSocket,
    GeventSocket,
    Reader,
    Watcher,
    accept_again_after,
    accept_descriptor,
    bytes_sent,
    send_all,
)
from .tunnel import Tunnel
from .upstream import Upstream, UpstreamPool

logger = logging.getLogger(__name__)

# What the server listens on: a (host, port) address, or a socket already listening.
Listener = tuple[str, int] | socket.socket
CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
SMALL_BODY = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Linux copies TCP_NODELAY from the listening socket to every accepted one: set it once
# there instead of one setsockopt per connection.
NODELAY_INHERITED = sys.platform.startswith("linux")
# Connection greenlets parked for reuse once their connection is done; beyond this many
# a finished one ends instead (each parked one keeps its ~16 KiB Python frame stack).
IDLE_WORKERS = 256


@dataclass(frozen=True)
class ProxyConfig:
    max_connections: int = 10_000
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    header_timeout: float = 10.0
    keepalive_timeout: float = 60.0
    body_timeout: float = 30.0
    connect_timeout: float = 10.0
    upstream_timeout: float = 60.0
    tunnel_idle_timeout: float = 300.0
    relay_buffer_bytes: int = 1024 * 1024
    relay_buffer_pool: int = 64
    upstream_pool_per_host: int = 32
    upstream_pool_idle: float = 30.0
    via_name: str = "goproxy"


class _Abort(Exception):
    """The response was already started; the only honest thing left is to close."""


@cython.cclass
class ClientConnection:
    auth_memo: AuthMemo = cython.declare(object, visibility="public")
    buckets: Buckets | None = cython.declare(object, visibility="public")
    cut_reason: str | None = cython.declare(object, visibility="public")
    framing: BodyFraming | None = cython.declare(object, visibility="public")
    idle: bool = cython.declare(object, visibility="public")
    ip: str = cython.declare(object, visibility="public")
    metered_user: int | None = cython.declare(object, visibility="public")
    reader: Reader = cython.declare(object, visibility="public")
    request: Request | None = cython.declare(object, visibility="public")
    response_started: bool = cython.declare(object, visibility="public")
    sock: GeventSocket = cython.declare(object, visibility="public")
    tunnel: Tunnel | None = cython.declare(object, visibility="public")
    up_mark: int = cython.declare(object, visibility="public")
    upstream: Upstream | GeventSocket | None = cython.declare(object, visibility="public")
    user_id: int | None = cython.declare(object, visibility="public")

    def __init__(self, sock: GeventSocket, ip: str) -> None:
        self.sock = sock
        self.ip = ip
        self.reader = Reader(sock)
        self.user_id = None  # the user holding this connection's slot
        self.metered_user = None  # whom the current exchange is billed to
        self.up_mark = 0
        self.upstream = None
        self.tunnel = None
        self.idle = True
        self.cut_reason = None
        self.request = None
        self.framing = None
        self.response_started = False
        self.buckets = None
        self.auth_memo = AuthMemo()

    def set_buckets(self, buckets: Buckets | None) -> None:
        """New speed buckets (a throttle started or ended), for the tunnel too if open."""
        self.buckets = buckets
        if self.tunnel is not None:
            self.tunnel.set_buckets(buckets)

    def cut(self, reason: str) -> None:
        """Close the client side and any upstream at once; blocked reads wake with EOF."""
        self.cut_reason = reason
        if self.tunnel is not None:
            self.tunnel.abort()
        socks = [self.sock]
        if isinstance(self.upstream, Upstream):
            socks.append(self.upstream.sock)
        elif self.upstream is not None:
            socks.append(self.upstream)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ProxyServer(StreamServer):
    """The forward proxy (its live controls are the registry's: registry.py)."""

    def __init__(
        self,
        listener: Listener,
        *,
        config: ProxyConfig,
        authenticator: Authenticator,
        policy: DestinationPolicy,
        meter: Meter,
        limits: UserLimitsCache,
        registry: ConnectionRegistry,
        metrics: ProxyMetrics,
        devices: DeviceGuard | None = None,
    ) -> None:
        # A plain greenlet per connection: handle() refuses beyond max_connections with a
        # 503 at once (a gevent Pool would stop accepting and leave newcomers hanging).
        super().__init__(listener, spawn="default")
        self.config = config
        self.authenticator = authenticator
        self.policy = policy
        self.meter = meter
        self.limits = limits
        self.registry = registry
        self.metrics = metrics
        self.devices = devices  # the shared device-limit guard; None: not enforced
        self.upstreams = UpstreamPool(
            policy,
            per_host=config.upstream_pool_per_host,
            idle_timeout=config.upstream_pool_idle,
            connect_timeout=config.connect_timeout,
        )
        self.buffers = BufferPool(config.relay_buffer_bytes, config.relay_buffer_pool)
        self.draining = False
        self._fd_warned = float("-inf")
        self._accept_retry: Watcher | None = None
        self._hub = get_hub()
        self._idle_workers: list[greenlet] = []
        # Built once: any of them ends the connection it is raised on.
        self._head_errors = (
            RequestTimeout("client too slow sending the request head"),
            HeadersTooLarge(f"request head larger than {config.max_header_bytes} bytes"),
            RequestTimeout("no request received in time"),
        )

    # Lifecycle ----------------------------------------------------------------------
    @property
    def listening(self) -> bool:
        """Accepting new connections (started, and not draining)."""
        return bool(self.started) and not self.draining

    def drain(self, timeout: float) -> int:
        """Stop accepting, close idle keep-alive connections, wait for the rest up to timeout.

        Returns how many connections had to be cut when the timeout ran out.
        """
        self.draining = True
        self.close()
        connections = self.registry.connections
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 2):
            for conn in list(connections):
                if conn.idle:
                    conn.cut("shutting down")
            if not connections or time.monotonic() >= deadline:
                break
            gevent.sleep(0.05)
        left = list(connections)
        for conn in left:
            conn.cut("shutting down")
        if left:
            gevent.sleep(0.1)
        self.upstreams.close_all()
        return len(left)

    # Connection handling ------------------------------------------------------------
    def _do_read(self) -> None:
        """The listener's watcher callback (in the hub): accept what is waiting.

        Replaces gevent's accept path (Python-level: a Greenlet spawned per connection,
        gevent's socket set-up): each accepted socket is handed straight to a parked
        connection greenlet (or a new one), which runs until it first waits.

        At RLIMIT_NOFILE the idle pooled upstream connections are closed first and the
        accept is tried again. If that frees nothing, or accept fails for another reason
        than one client's (ENOBUFS, ENOMEM), accepting pauses for 0.1 s instead of
        spinning; one warning every 10 s says what is wrong, and new clients wait in the
        listen backlog meanwhile.
        """
        listener = self.socket  # gevent unwraps it to the raw _socket.socket
        family = listener.family
        hub = self._hub
        idle = self._idle_workers
        for _ in range(self.max_accept):
            try:
                fd, address = accept_descriptor(listener)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    if self.upstreams.close_all():  # idle pooled upstreams go first
                        continue
                    self._pause_accepting(f"{exc.strerror} (RLIMIT_NOFILE)")
                    return
                if self.closed:  # a handler closed the listener (drain)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that one client gave up (or a filter refused it)
                # Anything else (ENOBUFS, ENOMEM, ...): back off instead of spinning.
                self._pause_accepting(exc.strerror or str(exc))
                return
            try:
                sock = ClientSocket(family, fd, hub)
            except OSError as exc:
                logger.warning("accepted connection unusable: %s", exc)
                socket.close(fd)
                continue
            worker = idle.pop() if idle else greenlet(self._work, parent=hub)
            worker.switch(sock, address)

    def _work(self, sock: ClientSocket, address: Address) -> None:
        """A connection greenlet: serves one connection, then parks for the next."""
        idle = self._idle_workers
        hub = self._hub
        while True:
            self.handle(sock, address)
            del sock, address  # parked greenlets hold no connection
            if len(idle) >= IDLE_WORKERS or self.closed:
                return
            me = getcurrent()
            idle.append(me)
            try:
                sock, address = hub.switch()
            except BaseException as exc:
                # Only _do_read resumes a parked greenlet; anything thrown in (a kill)
                # ends it, and it must leave the pool so no connection is handed to it.
                if me in idle:
                    idle.remove(me)
                if not isinstance(exc, GreenletExit):
                    logger.exception("parked connection greenlet interrupted")
                return

    def _pause_accepting(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._fd_warned >= 10.0:
            self._fd_warned = now
            logger.warning(
                "cannot accept connections: %s; accepting pauses for 0.1 s at a time and "
                "new clients wait in the listen backlog",
                reason,
            )
        self.stop_accepting()
        self._accept_retry = accept_again_after(self, 0.1)

    def init_socket(self) -> None:
        super().init_socket()
        if NODELAY_INHERITED:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self, sock: GeventSocket, address: Address) -> None:
        ip = address[0] if isinstance(address, tuple) else str(address)
        if not NODELAY_INHERITED:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.metrics.accepted += 1
        registry = self.registry
        if len(registry.connections) >= self.config.max_connections or self.draining:
            self._reply_and_close(sock, ServiceUnavailable("proxy is at its connection limit"))
            return
        conn = ClientConnection(sock, ip)
        registry.add(conn)
        try:
            self._serve(conn)
        except ClientGone:
            pass
        except Exception:
            logger.exception("unexpected error serving %s", ip)
            if not conn.response_started:
                self._send_error(conn, InternalError("internal proxy error"), keep_alive=False)
        finally:
            registry.remove(conn)
            if conn.upstream is not None:
                conn.upstream.close()
            conn.reader.release()
            try:
                sock.close()
            except OSError:
                pass

    def _reply_and_close(self, sock: GeventSocket, exc: ProxyError) -> None:
        self.metrics.status(exc.status)
        try:
            send_all(sock, exc.response(keep_alive=False), 5.0)
        except OSError:
            pass
        sock.close()

    def _serve(self, conn: ClientConnection) -> None:
        cfg = self.config
        reader = conn.reader
        first = True
        too_slow, too_large, silent = self._head_errors
        while conn.cut_reason is None:
            conn.idle = True
            conn.metered_user = None
            conn.request = conn.framing = None
            conn.response_started = False
            mark = reader.consumed
            try:
                head = reader.read_head(
                    max_bytes=cfg.max_header_bytes,
                    first_byte_timeout=cfg.header_timeout if first else cfg.keepalive_timeout,
                    head_timeout=cfg.header_timeout,
                    too_slow=too_slow,
                    too_large=too_large,
                    # A new connection that says nothing is told why it is dropped; an idle
                    # keep-alive connection is closed quietly (RFC 9112 §9.5).
                    silent_timeout=silent if first else None,
                    wait_first=not first,
                )
            except ProxyError as exc:
                self._send_error(conn, exc, keep_alive=False)
                return
            if head is None:
                return
            conn.idle = False
            conn.up_mark = mark
            first = False
            try:
                keep = self._exchange(conn, head)
            except _Abort:
                return
            except ProxyError as exc:
                if conn.response_started:
                    return
                keep = self._error_keep_alive(conn, exc)
                self._send_error(conn, exc, keep_alive=keep)
            finally:
                self._count_up(conn)
            if not keep or self.draining:
                return

    def _error_keep_alive(self, conn: ClientConnection, exc: ProxyError) -> bool:
        req = conn.request
        return (
            exc.keep_alive
            and req is not None
            and req.wants_keep_alive
            and conn.framing is NO_BODY
            and not self.draining
            and conn.cut_reason is None
        )

    def _send_error(self, conn: ClientConnection, exc: ProxyError, *, keep_alive: bool) -> None:
        if conn.cut_reason is not None:
            return
        self.metrics.status(exc.status)
        try:
            self._send(conn, exc.response(keep_alive=keep_alive))
        except (ClientGone, OSError):
            pass

    # Metering helpers ---------------------------------------------------------------
    def _count_up(self, conn: ClientConnection) -> None:
        consumed = conn.reader.consumed
        if conn.metered_user is not None and consumed > conn.up_mark:
            self.meter.add(conn.metered_user, consumed - conn.up_mark, 0)
        conn.up_mark = consumed

    def _send(self, conn: ClientConnection, data: bytes | memoryview) -> None:
        if conn.buckets is not None:
            # Pay before sending, so the bytes leave at the plan's rate.
            delay = conn.buckets[1].consume(len(data))
            if delay > 0:
                gevent.sleep(delay)
        try:
            send_all(conn.sock, data, self.config.body_timeout)
        except OSError as exc:
            if conn.metered_user is not None:
                self.meter.add(conn.metered_user, 0, bytes_sent(exc))
            raise ClientGone(str(exc)) from exc
        if conn.metered_user is not None:
            self.meter.add(conn.metered_user, 0, len(data))

    def _piece(self, conn: ClientConnection, direction: int) -> int:
        """Read size for relayed bodies: the relay buffer, or one bucket burst when limited."""
        if conn.buckets is None:
            return self.config.relay_buffer_bytes
        return min(self.config.relay_buffer_bytes, conn.buckets[direction].max_read)

    # Admission ----------------------------------------------------------------------
    def _admit(self, conn: ClientConnection, principal: Principal) -> None:
        uid = principal.user_id
        registry = self.registry
        reason = registry.restriction(uid)
        if reason is not None:
            self.metrics.restriction_refusals += 1
            raise Forbidden(f"user restricted: {reason}")
        limits = self.limits.get(uid)
        if conn.user_id != uid:
            devices = limits.device_limit
            if (
                devices is not None
                and self.devices is not None
                and not self.devices.admit(uid, conn.ip, devices)
            ):
                raise Forbidden(
                    f"device limit reached: the plan allows {devices} client IP address(es) at once"
                )
            if not registry.claim(conn, uid, limits.max_connections):
                raise TooManyRequests(
                    f"too many concurrent connections (plan allows {limits.max_connections})",
                    retry_after=1,
                )
        conn.buckets = registry.buckets(uid, limits.speed_bps)
        conn.metered_user = uid

    # One request --------------------------------------------------------------------
    def _exchange(self, conn: ClientConnection, head: bytes) -> bool:
        req = parse_request_head(head, max_header_count=self.config.max_header_count)
        conn.request = req
        conn.framing = NO_BODY if req.is_connect else request_framing(req)
        try:
            principal = self.authenticator.authenticate(
                req.headers.get("proxy-authorization"), conn.ip, conn.auth_memo
            )
        except (ProxyAuthRequired, TooManyRequests) as exc:
            self.metrics.auth_failure(exc.status, req.headers.get("proxy-authorization"))
            raise
        self._admit(conn, principal)
        self._count_up(conn)
        if req.is_connect:
            self._tunnel(conn, req)
            return False
        return self._forward(conn, req, conn.framing)

    def _tunnel(self, conn: ClientConnection, req: Request) -> None:
        self.policy.check_connect_port(req.port)
        sock = self.upstreams.connect(req.host, req.port)
        conn.upstream = sock
        if conn.cut_reason is not None:
            return
        self._send(conn, CONNECT_OK)
        conn.response_started = True
        conn.reader.release()  # the tunnel waits on the client socket itself from here
        self.metrics.status(200)
        reader = conn.reader
        # Bytes the client sent right behind the CONNECT head belong to the tunnel.
        if reader.buf:
            early = bytes(reader.buf)
            reader.buf.clear()
            reader.consumed += len(early)
            self._count_up(conn)
            try:
                send_all(sock, early, self.config.tunnel_idle_timeout)
            except OSError:
                raise _Abort() from None
        uid = conn.metered_user
        assert uid is not None
        meter_add = self.meter.add
        tunnel = Tunnel(
            conn.sock,
            sock,
            idle_timeout=self.config.tunnel_idle_timeout,
            pool=self.buffers,
            on_up=lambda n: meter_add(uid, n, 0),
            on_down=lambda n: meter_add(uid, 0, n),
            buckets=conn.buckets,
        )
        conn.tunnel = tunnel
        if conn.cut_reason is not None:
            return
        tunnel.run()

    def _forward(self, conn: ClientConnection, req: Request, framing: BodyFraming) -> bool:
        cfg = self.config
        head = build_upstream_request(req, framing, via_name=cfg.via_name)
        up = self._send_head(conn, req, head)
        if framing is not NO_BODY and "100-continue" in req.headers.tokens("expect"):
            if req.version >= (1, 1):
                self._send(conn, CONTINUE)
        self._send_body(conn, up, framing)
        conn.framing = NO_BODY  # fully read: an error response may keep the connection
        if up.reused and framing is NO_BODY and req.method in IDEMPOTENT:
            # A pooled connection the origin closed meanwhile fails before any response
            # byte; a body-less idempotent request is then sent again on a fresh one.
            try:
                first = self._read_response_head(conn, up)
            except BadGateway:
                up.close()
                up = self._send_head(conn, req, head, fresh=True)
                first = None
            return self._relay_response(conn, req, up, first)
        return self._relay_response(conn, req, up, None)

    def _send_head(
        self, conn: ClientConnection, req: Request, head: bytes, *, fresh: bool = False
    ) -> Upstream:
        for attempt in range(2):
            up = self.upstreams.acquire(req.host, req.port, fresh=fresh or attempt > 0)
            conn.upstream = up
            try:
                send_all(up.sock, head, self.config.upstream_timeout)
                return up
            except OSError as exc:
                up.close()
                conn.upstream = None
                if not up.reused:
                    raise BadGateway(f"upstream {req.host}:{req.port} failed: {exc}") from None
        raise BadGateway(f"upstream {req.host}:{req.port} keeps failing")

    def _send_body(self, conn: ClientConnection, up: Upstream, framing: BodyFraming) -> None:
        if framing is NO_BODY:
            return
        reader = conn.reader
        reader.timeout = self.config.body_timeout
        reader.timeout_error = RequestTimeout("client too slow sending the request body")
        piece = self._piece(conn, 0)
        pieces: Iterator[bytes]
        if framing.kind == "length":
            pieces = iter_length(reader, framing.length, piece)
        else:
            pieces = iter_chunked(reader, BadRequest, piece)
        up_bucket = conn.buckets[0] if conn.buckets else None
        try:
            for data in pieces:
                self._count_up(conn)
                if up_bucket is not None:
                    delay = up_bucket.consume(len(data))
                    if delay > 0:
                        gevent.sleep(delay)
                try:
                    send_all(up.sock, data, self.config.upstream_timeout)
                except OSError as exc:
                    raise BadGateway(f"upstream closed while receiving the body: {exc}") from None
        finally:
            reader.timeout = None
            reader.timeout_error = None

    def _read_response_head(self, conn: ClientConnection, up: Upstream) -> bytes:
        cfg = self.config
        # One instance serves both timeouts: raising either ends this upstream connection.
        too_slow = up.head_timeout_error
        head = up.reader.read_head(
            max_bytes=cfg.max_header_bytes,
            first_byte_timeout=cfg.upstream_timeout,
            head_timeout=cfg.upstream_timeout,
            too_slow=too_slow,
            too_large=up.head_too_large_error,
            silent_timeout=too_slow,
            wait_first=True,
        )
        if head is None:
            if conn.cut_reason is not None:
                raise _Abort()
            raise BadGateway("upstream closed the connection without a response")
        return head

    def _relay_response(
        self, conn: ClientConnection, req: Request, up: Upstream, first: bytes | None
    ) -> bool:
        cfg = self.config
        up.reader.timeout = cfg.upstream_timeout
        up.reader.timeout_error = up.body_timeout_error  # built once per upstream connection
        while True:
            raw_head = first if first is not None else self._read_response_head(conn, up)
            first = None
            resp = parse_response_head(raw_head, max_header_count=cfg.max_header_count)
            if resp.status >= 200:
                break
            if resp.status == 101:
                raise BadGateway("upstream switched protocols, which this proxy does not relay")
            if req.version >= (1, 1):
                interim = [f"HTTP/1.1 {resp.status} {resp.reason or '-'}"]
                interim += [f"{n}: {v}" for n, v in forwardable(resp.headers)]
                self._send(conn, ("\r\n".join(interim) + "\r\n\r\n").encode("latin-1"))
        framing = response_framing(resp, request_method=req.method)
        keep = req.wants_keep_alive and not self.draining and conn.cut_reason is None
        out = framing
        if framing.kind == "close" or (framing.kind == "chunked" and req.version < (1, 1)):
            out = BodyFraming("close")
            keep = False
        reusable = (
            framing.kind != "close"
            and resp.version >= (1, 1)
            and "close" not in resp.headers.tokens("connection")
        )
        head = build_client_response_head(resp, out, keep_alive=keep, via_name=cfg.via_name)
        if framing.kind == "length" and len(up.reader.buf) >= framing.length <= SMALL_BODY:
            # The whole (small) body already arrived: one send for head and body.
            head += up.reader.read_some(framing.length)
            framing = NO_BODY
        self._send(conn, head)
        conn.response_started = True
        self.metrics.status(resp.status)
        if framing is not NO_BODY:
            try:
                self._relay_body(conn, up, framing, reencode=out.kind == "chunked")
            except ProxyError as exc:
                logger.info("aborting response to %s: %s", conn.ip, exc.message)
                raise _Abort() from None
        conn.upstream = None
        if reusable and conn.cut_reason is None:
            self.upstreams.release(up)
        else:
            up.close()
        return keep

    def _relay_body(
        self, conn: ClientConnection, up: Upstream, framing: BodyFraming, *, reencode: bool
    ) -> None:
        piece = self._piece(conn, 1)
        if framing.kind == "length":
            for data in iter_length(up.reader, framing.length, piece):
                self._send(conn, data)
        elif framing.kind == "chunked":
            chunks = iter_chunked(up.reader, BadGateway, piece)
            if reencode:
                for data in chunks:
                    self._send(conn, data)
            else:
                for data in _dechunk(chunks):
                    self._send(conn, data)
        elif framing.kind == "close":
            while True:
                data = up.reader.read_until_close(piece)
                if not data:
                    break
                self._send(conn, data)


def _dechunk(frames: Iterator[bytes]) -> Iterator[bytes]:
    """Data only, from iter_chunked's frame sequence (size line, data..., CRLF)."""
    expect_size = True
    remaining = 0
    for frame in frames:
        if expect_size:
            if frame == b"0\r\n\r\n":
                return
            remaining = int(frame[:-2], 16)
            expect_size = False
        elif remaining:
            remaining -= len(frame)
            yield frame
        else:
            expect_size = True  # the CRLF after a chunk's data
