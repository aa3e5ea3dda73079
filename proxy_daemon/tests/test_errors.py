"""Errors: how a ProxyError renders, and malformed input and failure statuses, each sent on
a real socket to the daemon."""

from __future__ import annotations

import socket
import time

import pytest

from goproxy_site.tests.support.net import free_port
from goproxy_site.tests.support.proxy import E2E, EchoServer, GarbageHandler, RawClient, basic
from proxy_daemon.errors import BadRequest, ProxyAuthRequired

pytestmark = E2E


class ProxyErrorTests:
    def test_errors_render_status_reason_and_body(self) -> None:
        raw = ProxyAuthRequired("proxy authentication required").response(keep_alive=True)
        head, body = raw.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
        assert b'Proxy-Authenticate: Basic realm="goproxy"' in head
        assert b"Connection: keep-alive" in head
        assert body == b"proxy authentication required\n"
        assert b"Content-Length: %d" % len(body) in head
        assert BadRequest("x\r\ny").response().endswith(b"\r\n\r\nx  y\n")


H = "http://example.com"
# (name, raw request, expected status). Parsing happens before authentication, so none
# of these need credentials.
MALFORMED = [
    ("origin-form", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("asterisk", b"OPTIONS * HTTP/1.1\r\n\r\n", 400),
    ("https absolute", b"GET https://example.com/ HTTP/1.1\r\n\r\n", 400),
    ("ftp scheme", b"GET ftp://example.com/ HTTP/1.1\r\n\r\n", 400),
    ("empty host", b"GET http:///x HTTP/1.1\r\n\r\n", 400),
    ("userinfo", b"GET http://u:p@example.com/ HTTP/1.1\r\n\r\n", 400),
    ("space in target", b"GET http://exa mple.com/ HTTP/1.1\r\n\r\n", 400),
    ("port too big", b"GET http://example.com:99999/ HTTP/1.1\r\n\r\n", 400),
    ("port not numeric", b"GET http://example.com:ab/ HTTP/1.1\r\n\r\n", 400),
    ("unterminated ipv6", b"GET http://[::1/ HTTP/1.1\r\n\r\n", 400),
    ("bad host chars", b"GET http://ex$ample.com/ HTTP/1.1\r\n\r\n", 400),
    ("http/2.0", b"GET http://example.com/ HTTP/2.0\r\n\r\n", 505),
    ("version without minor", b"GET http://example.com/ HTTP/1\r\n\r\n", 400),
    ("not http version", b"GET http://example.com/ FOO/1.1\r\n\r\n", 400),
    ("two-part request line", b"GET http://example.com/\r\n\r\n", 400),
    ("bad method", b"G(T http://example.com/ HTTP/1.1\r\n\r\n", 400),
    ("double space", b"GET  http://example.com/ HTTP/1.1\r\n\r\n", 400),
    ("trailing junk", b"GET http://example.com/ HTTP/1.1 x\r\n\r\n", 400),
    ("control char in target", b"GET http://example.com/\x01 HTTP/1.1\r\n\r\n", 400),
    ("space in header name", b"GET http://example.com/ HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    ("space before colon", b"GET http://example.com/ HTTP/1.1\r\nX-A : x\r\n\r\n", 400),
    ("header without colon", b"GET http://example.com/ HTTP/1.1\r\nNoColon\r\n\r\n", 400),
    ("empty header name", b"GET http://example.com/ HTTP/1.1\r\n: v\r\n\r\n", 400),
    ("obs-fold", b"GET http://example.com/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
    ("NUL in value", b"GET http://example.com/ HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
    ("bare CR", b"GET http://example.com/ HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
    ("two Host headers", b"GET http://example.com/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("CL not numeric", b"POST http://example.com/ HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    ("CL negative", b"POST http://example.com/ HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (
        "CL conflicting",
        b"POST http://example.com/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        400,
    ),
    (
        "CL and TE",
        b"POST http://example.com/ HTTP/1.1\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    ("TE gzip", b"POST http://example.com/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (
        "TE in HTTP/1.0",
        b"POST http://example.com/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    ("CONNECT without port", b"CONNECT example.com HTTP/1.1\r\n\r\n", 400),
    ("CONNECT port 0", b"CONNECT example.com:0 HTTP/1.1\r\n\r\n", 400),
    ("CONNECT empty host", b"CONNECT :443 HTTP/1.1\r\n\r\n", 400),
    ("CONNECT userinfo", b"CONNECT u@example.com:443 HTTP/1.1\r\n\r\n", 400),
    (
        "head too large",
        b"GET http://example.com/ HTTP/1.1\r\nX: " + b"a" * 40_000 + b"\r\n\r\n",
        431,
    ),
    (
        "too many headers",
        b"GET http://example.com/ HTTP/1.1\r\n" + b"X-H: 1\r\n" * 150 + b"\r\n",
        431,
    ),
    ("head never finished", b"GET http://example.com/ HTTP/1.1\r\nX: 1\r\n", 408),
    ("TLS hello at the proxy port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 408),
]


def status_of(port: int, raw: bytes) -> tuple[int, bytes]:
    c = RawClient(port)
    c.send(raw)
    r = c.response()
    c.close()
    return r.status, r.body


class MalformedRequestTests:
    def test_table_has_at_least_30_cases(self) -> None:
        assert len(MALFORMED) >= 30

    @pytest.mark.parametrize(("name", "raw", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
    def test_malformed_input_gets_its_status(self, proxy, name, raw, status) -> None:
        got, body = status_of(proxy.port, raw)
        assert got == status, (name, body)
        assert body.strip(), "every error carries a short body naming the problem"

    def test_silent_client_gets_408(self, proxy) -> None:
        c = RawClient(proxy.port)
        r = c.response()  # the daemon runs with PROXY_HEADER_TIMEOUT=1
        assert r.status == 408
        c.close()

    def test_slowloris_trickle_gets_408(self, proxy) -> None:
        c = RawClient(proxy.port)
        status = None
        for ch in b"GET http://example.com/ HTTP/1.1\r\nX-Slow: " + b"a" * 30:
            try:
                c.send(bytes([ch]))
            except OSError:
                break
            time.sleep(0.1)
            c.sock.settimeout(0.001)
            try:
                if c._fill():
                    status = int(c.buf.split(b" ")[1])
                    break
            except (TimeoutError, BlockingIOError):
                pass
            finally:
                c.sock.settimeout(10)
        assert status == 408


@pytest.fixture(scope="module")
def garbage_origin():
    server = EchoServer(GarbageHandler).start()
    yield server
    server.shutdown()


class UpstreamFailureTests:
    def _get(self, proxy, user, url: str) -> tuple[int, bytes, str | None]:
        c = RawClient(proxy.port)
        c.send(f"GET {url} HTTP/1.1\r\nProxy-Authorization: {basic(*user.auth)}\r\n\r\n".encode())
        r = c.response()
        c.close()
        return r.status, r.body, r.header("Connection")

    def test_unreachable_upstream_is_502(self, proxy, proxy_users) -> None:
        port = free_port()  # nothing listens there
        status, body, conn = self._get(proxy, proxy_users["px-alice"], f"http://127.0.0.1:{port}/")
        assert status == 502 and b"cannot connect" in body
        assert conn == "keep-alive"

    def test_dns_failure_is_502(self, proxy, proxy_users) -> None:
        status, body, _ = self._get(proxy, proxy_users["px-alice"], "http://no-such-host.invalid/")
        assert status == 502 and b"cannot resolve" in body

    def test_upstream_timeout_is_504(self, proxy, proxy_users, origin) -> None:
        # PROXY_UPSTREAM_TIMEOUT=2 in the daemon; the origin answers after 3 s.
        status, body, _ = self._get(proxy, proxy_users["px-alice"], origin.url("/slow?s=3"))
        assert status == 504 and b"upstream" in body

    def test_garbage_from_upstream_is_502(self, proxy, proxy_users, garbage_origin) -> None:
        url = f"http://127.0.0.1:{garbage_origin.port}/"
        status, body, _ = self._get(proxy, proxy_users["px-alice"], url)
        assert status == 502 and b"upstream" in body

    def test_connect_to_disallowed_port_is_403(self, proxy, proxy_users) -> None:
        u = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        auth = basic(*u.auth)
        c.send(f"CONNECT 127.0.0.1:25 HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
        r = c.response()
        assert r.status == 403 and b"port 25 is not allowed" in r.body
        c.close()

    def test_invalid_chunked_body_is_400(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        c.send(
            f"POST {origin.url('/echo')} HTTP/1.1\r\nProxy-Authorization: {basic(*u.auth)}\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".encode()
        )
        r = c.response()
        assert r.status == 400 and b"chunk" in r.body
        c.close()

    def test_client_reset_mid_body_does_not_hurt_the_daemon(
        self, proxy, proxy_users, origin
    ) -> None:
        u = proxy_users["px-alice"]
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.sendall(
            f"POST {origin.url('/sink')} HTTP/1.1\r\nProxy-Authorization: {basic(*u.auth)}\r\n"
            "Content-Length: 1000000\r\n\r\n".encode()
            + b"x" * 1000
        )
        s.close()
        status, _body, _ = self._get(proxy, u, origin.url("/hello"))
        assert status == 200
