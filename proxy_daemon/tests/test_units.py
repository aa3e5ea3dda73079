"""Pure units: request/response parsing and framing, destination policy, token bucket."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from proxy_daemon import http1
from proxy_daemon.errors import (
    BadGateway,
    BadRequest,
    Forbidden,
    ProxyAuthRequired,
    ServiceUnavailable,
)
from proxy_daemon.http1 import (
    NO_BODY,
    BodyFraming,
    build_client_response_head,
    build_upstream_request,
    parse_absolute_target,
    parse_request_head,
    parse_response_head,
    response_framing,
)
from proxy_daemon.limits import (
    UNLIMITED,
    ConnectionCounter,
    TokenBucket,
    UserLimits,
    UserLimitsCache,
)
from proxy_daemon.policy import DestinationPolicy, address_refusal, connect


@contextlib.contextmanager
def descriptors_used_up() -> Iterator[list[int]]:
    """RLIMIT_NOFILE lowered to 64 and every descriptor below it taken (the list, which
    the caller may add to); all restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        for _ in range(64):  # bounded: the limit is 64
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield held
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class HttpParsingTests:
    def test_absolute_target_becomes_origin_form_and_authority(self) -> None:
        assert parse_absolute_target("http://Example.com") == (
            "example.com",
            80,
            "/",
            "example.com",
        )
        assert parse_absolute_target("http://a.b:8080/p?q=1#frag") == (
            "a.b", 8080, "/p?q=1", "a.b:8080",
        )  # fmt: skip
        assert parse_absolute_target("HTTP://a.b?x") == ("a.b", 80, "/?x", "a.b")
        assert parse_absolute_target("http://[::1]:81/") == ("::1", 81, "/", "[::1]:81")

    def test_fast_field_scan_agrees_with_the_line_parser(self) -> None:
        """The one-pass field scanner (any case, padded and empty values, fields it only
        forwards) gives what the general line parser gives, and refuses what it refuses."""
        head = (
            b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: \t 5 \t\r\nX-Empty:\r\nConnection:\r\n"
            b'Via: 1.1 a, 1.1 b  \r\nETag: "x"\r\nTransfer-Encoding:chunked\r\n\r\n'
        )
        fast = parse_response_head(head, max_header_count=20)
        assert fast.headers._special is not None  # the fast path took it
        slow = http1._parse_response_slow(head, 20)
        for name in ("content-length", "x-empty", "connection", "via", "etag", "transfer-encoding"):
            assert fast.headers.get_all(name) == slow.headers.get_all(name), name
        assert fast.headers.get_all("content-length") == ["5"]
        kept = fast.headers.kept_lines(http1.CLIENT_RESPONSE_DROP)
        assert kept == 'X-Empty:\r\nETag: "x"\r\n'  # each kept line with its CRLF
        for bad in (b"Bad Name: x\r\n", b": x\r\n", b"NoColon\r\n", b"\xe9: x\r\n"):
            with pytest.raises(BadGateway):
                parse_response_head(b"HTTP/1.1 200 OK\r\n" + bad + b"\r\n", max_header_count=20)

    def test_upstream_request_strips_hop_by_hop_and_adds_via(self) -> None:
        req = parse_request_head(
            b"POST http://h.example/x HTTP/1.1\r\nHost: wrong\r\nConnection: close, X-Hop\r\n"
            b"X-Hop: 1\r\nProxy-Connection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
            b"Trailer: X\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eDp5\r\nX-Keep: yes\r\n"
            b"Via: 1.0 other\r\nContent-Length: 3\r\n\r\n",
            max_header_count=100,
        )
        out = build_upstream_request(req, BodyFraming("length", 3), via_name="goproxy").decode()
        lines = out.split("\r\n")
        assert lines[0] == "POST /x HTTP/1.1"
        assert "Host: h.example" in lines and "Host: wrong" not in lines
        for name in ("Connection", "X-Hop", "Proxy-Connection", "Keep-Alive", "TE", "Trailer"):
            assert not any(line.startswith(name + ":") for line in lines), name
        assert not any(line.startswith(("Upgrade:", "Proxy-Authorization:")) for line in lines)
        assert "X-Keep: yes" in lines
        assert "Via: 1.0 other, 1.1 goproxy" in lines
        assert "Content-Length: 3" in lines

    @pytest.mark.parametrize(
        "fields",
        [
            "Host: a\r\nX-A: 1\r\n",
            "X-A: 1 \r\nHost: a\r\nVia: 1.0 x\r\nX-B:\t2\r\nContent-Length: 0\r\n",
            "CONNECTION: close\r\nX-A: 1\r\n",
            "Connection: close, X-Named\r\nX-Named: 1\r\nX-A: 2\r\n",
            "Connection: close\r\nClose: yes\r\nX-A: 2\r\n",
            "Proxy-Connection: keep-alive\r\nKeep-Alive: 5\r\nTE: x\r\nX-A: 1\r\n",
            "host: a\r\nproxy-authorization: Basic eDp5\r\nhOsT-x: 1\r\n",
        ],
    )
    def test_fast_heads_forward_what_the_line_parser_forwards(self, fields: str) -> None:
        """The fast parsers keep field lines verbatim; the result must carry the same
        fields as rebuilding them from the line-by-line parse."""

        def fields_of(out: bytes) -> list[tuple[str, str]]:
            lines = out.decode("latin-1").split("\r\n")[1:-2]
            return [(n.lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines)]

        req_head = f"GET http://o.example/p HTTP/1.1\r\n{fields}\r\n".encode()
        fast = http1._parse_request_fast(req_head, 100)
        slow = http1._parse_request_slow(req_head, 100)
        assert fast is not None
        built = [build_upstream_request(r, NO_BODY, via_name="gp") for r in (fast, slow)]
        assert fields_of(built[0]) == fields_of(built[1])

        resp_head = f"HTTP/1.1 200 OK\r\n{fields}\r\n".encode()
        fast_resp = parse_response_head(resp_head, max_header_count=100)
        slow_resp = http1._parse_response_slow(resp_head, 100)
        framing = BodyFraming("length", 0)
        built = [
            build_client_response_head(r, framing, keep_alive=True, via_name="gp")
            for r in (fast_resp, slow_resp)
        ]
        assert fields_of(built[0]) == fields_of(built[1])

    def test_keep_alive_rules_by_version(self) -> None:
        def req(text: bytes):
            return parse_request_head(text, max_header_count=100)

        assert req(b"GET http://a/ HTTP/1.1\r\n\r\n").wants_keep_alive is True
        assert req(b"GET http://a/ HTTP/1.1\r\nConnection: close\r\n\r\n").wants_keep_alive is False
        assert req(b"GET http://a/ HTTP/1.0\r\n\r\n").wants_keep_alive is False
        ab_k = b"GET http://a/ HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"
        assert req(ab_k).wants_keep_alive is True

    @pytest.mark.parametrize(
        ("head", "method", "framing"),
        [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", BodyFraming("length", 5)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", NO_BODY),
            (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", NO_BODY),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", "GET", NO_BODY),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET",
                BodyFraming("chunked"),
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", "GET", BodyFraming("close")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", BodyFraming("close")),
        ],
    )
    def test_response_framing(self, head: bytes, method: str, framing: BodyFraming) -> None:
        resp = parse_response_head(head, max_header_count=100)
        assert response_framing(resp, request_method=method) == framing

    @pytest.mark.parametrize(
        "head",
        [
            b"garbage\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 99 Low\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        ],
    )
    def test_bad_upstream_responses_are_502(self, head: bytes) -> None:
        with pytest.raises(BadGateway):
            resp = parse_response_head(head, max_header_count=100)
            response_framing(resp, request_method="GET")

    def test_errors_render_status_reason_and_body(self) -> None:
        raw = ProxyAuthRequired("proxy authentication required").response(keep_alive=True)
        head, body = raw.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
        assert b'Proxy-Authenticate: Basic realm="goproxy"' in head
        assert b"Connection: keep-alive" in head
        assert body == b"proxy authentication required\n"
        assert b"Content-Length: %d" % len(body) in head
        assert BadRequest("x\r\ny").response().endswith(b"\r\n\r\nx  y\n")


class PolicyTests:
    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254",
            "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.2.3", "0.0.0.0", "0.1.2.3",
            "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
            "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:c0a8:0101::1",
        ],
    )  # fmt: skip
    def test_private_and_special_addresses_are_refused(self, address: str) -> None:
        assert address_refusal(address) is not None

    @pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
    def test_public_addresses_are_allowed(self, address: str) -> None:
        assert address_refusal(address) is None

    def test_mixed_resolution_keeps_only_public_addresses(self) -> None:
        policy = DestinationPolicy(allow_private=False, connect_ports=frozenset({443}))
        assert policy.allowed_addresses("h", ["127.0.0.1", "8.8.8.8"]) == ["8.8.8.8"]
        with pytest.raises(Forbidden, match="loopback"):
            policy.allowed_addresses("rebind.example", ["127.0.0.1"])

    def test_out_of_descriptors_is_a_503_not_an_internal_error(self) -> None:
        """At the fd limit (10k tunnels hold 20k fds) opening the upstream socket fails:
        the client is told so with a 503, the connection is not dropped with a 500."""
        policy = DestinationPolicy(allow_private=True, connect_ports=frozenset({443}))
        with descriptors_used_up():
            with pytest.raises(ServiceUnavailable, match="cannot open a connection") as caught:
                connect(policy, "127.0.0.1", 9, timeout=1.0)
        assert caught.value.status == 503

    def test_connect_ports(self) -> None:
        policy = DestinationPolicy(allow_private=True, connect_ports=frozenset({443, 8443}))
        policy.check_connect_port(443)
        with pytest.raises(Forbidden, match=r"port 22 is not allowed \(allowed: 443, 8443\)"):
            policy.check_connect_port(22)


class LimitTests:
    def test_token_bucket_allows_a_burst_then_the_rate(self) -> None:
        bucket = TokenBucket(1000, now=0.0)
        assert bucket.max_read == 16 * 1024  # minimum burst
        bucket = TokenBucket(100_000, now=0.0)
        assert bucket.consume(100_000, now=0.0) == 0.0
        assert bucket.consume(50_000, now=0.0) == pytest.approx(0.5)
        assert bucket.consume(50_000, now=1.0) == pytest.approx(0.0)

    def test_limits_cache_keeps_last_known_limits_when_the_db_fails(self) -> None:
        calls: list[int] = []

        def loader(user_id: int) -> UserLimits:
            calls.append(user_id)
            if len(calls) > 1:
                raise RuntimeError("plans DB down")
            return UserLimits(max_connections=3, speed_bps=None)

        cache = UserLimitsCache(loader, ttl=0.0)
        assert cache.get(1).max_connections == 3
        assert cache.get(1).max_connections == 3  # loader failed: last known limits
        assert UserLimitsCache(lambda uid: loader(uid), ttl=0).get(2) == UNLIMITED

    def test_connection_counter(self) -> None:
        counter = ConnectionCounter()
        assert counter.acquire(1, 2) and counter.acquire(1, 2)
        assert counter.acquire(1, 2) is False
        assert counter.acquire(1, None) is True  # no plan limit
        counter.release(1)
        assert counter.counts == {1: 2}


class ReadWaiterTests:
    """The persistent read watcher behind every head and body read of the proxy."""

    @pytest.fixture
    def pair(self) -> Iterator[tuple[Any, Any, Any]]:
        """A connected gevent socket pair and a ReadWaiter on the second socket."""
        from gevent import socket as gsocket

        from proxy_daemon.sockio import ReadWaiter

        a, b = gsocket.socketpair()
        waiter = ReadWaiter(b)
        yield a, b, waiter
        waiter.close()
        a.close()
        b.close()

    def test_wakes_on_data_times_out_and_wakes_on_shutdown(self, pair) -> None:
        import gevent

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
        import gevent

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
        import time

        import gevent

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
        import time

        import gevent

        a, b, waiter = pair
        time.sleep(0.3)  # blocking: the hub does not run, its cached clock goes stale
        gevent.spawn_later(0.1, a.send, b"x")
        waiter.wait(0.25)  # counted from now, not from the clock 0.3 s ago
        assert b.recv(10) == b"x"

    def test_a_timer_firing_with_nobody_waiting_throws_nothing(self, pair) -> None:
        import gevent

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
        from gevent import socket as gsocket

        from proxy_daemon.sockio import bytes_sent, send_all

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
        from proxy_daemon.sockio import bytes_sent, send_all

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
            send_all(Sock(), b"0123456789", 1.0)  # type: ignore[arg-type]
        assert bytes_sent(caught.value) == 6

    def test_an_error_before_any_progress_reports_zero(self) -> None:
        from gevent import socket as gsocket

        from proxy_daemon.sockio import bytes_sent, send_all

        a, b = gsocket.socketpair()
        b.close()
        with pytest.raises(OSError) as caught:
            send_all(a, b"x" * 100, 1.0)
        assert bytes_sent(caught.value) == 0
        a.close()

    def test_a_stalled_tunnel_bills_exactly_what_its_client_got(self) -> None:
        import gevent
        from gevent import socket as gsocket

        from proxy_daemon.sockio import BufferPool
        from proxy_daemon.tunnel import Tunnel

        # TCP on the client side: its sends can be partial, as a real client's are.
        with gsocket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client_app = gsocket.create_connection(listener.getsockname())
            client_side, _ = listener.accept()
        client_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client_app.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        upstream_side, origin = gsocket.socketpair()
        down: list[int] = []
        tunnel = Tunnel(
            client_side,
            upstream_side,
            idle_timeout=0.2,
            pool=BufferPool(64 * 1024, 4),
            on_up=lambda n: None,
            on_down=down.append,
        )

        def flood() -> None:  # the origin sends until the tunnel gives up on it
            with contextlib.suppress(OSError):
                for _ in range(1000):
                    origin.sendall(b"y" * 65536)

        feeder = gevent.spawn(flood)
        tunnel.run()  # the client never reads: the down send stalls past the idle timeout
        feeder.kill()
        received = 0
        client_app.settimeout(1.0)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := client_app.recv(1 << 20):  # to the FIN the abort sent
                received += len(chunk)
        assert received > 0 and sum(down) == received
        for sock in (client_app, client_side, upstream_side, origin):
            sock.close()


class UpstreamPoolTests:
    def test_at_the_descriptor_limit_idle_pooled_connections_go_first(self) -> None:
        """Idle keep-alive connections to origins are the cheapest descriptors to give up:
        a new connection (or an accept) that hits RLIMIT_NOFILE closes them and retries."""
        from proxy_daemon.upstream import UpstreamPool

        origin = socket.socket()
        origin.bind(("127.0.0.1", 0))
        origin.listen(16)
        port = origin.getsockname()[1]
        policy = DestinationPolicy(allow_private=True, connect_ports=frozenset())
        pool = UpstreamPool(policy, per_host=4, idle_timeout=30.0, connect_timeout=2.0)
        pool.release(pool.acquire("127.0.0.1", port))  # one idle pooled connection
        try:
            with descriptors_used_up() as held:
                fresh = pool.acquire("127.0.0.1", port, fresh=True)
                assert pool.close_all() == 0  # the idle one was closed to make room
                fresh.close()
                with pytest.raises(ServiceUnavailable, match="cannot open a connection"):
                    held.append(os.open(os.devnull, os.O_RDONLY))  # the freed slot, taken
                    pool.acquire("127.0.0.1", port, fresh=True)  # nothing left to give up
        finally:
            pool.close_all()
            origin.close()
