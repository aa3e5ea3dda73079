"""CONNECT tunnels through the daemon: TLS origin, early data, half-close, idle timeout."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time

import requests

from .conftest import E2E
from .support import RawClient, basic

pytestmark = E2E


def open_tunnel(proxy, user, port: int, early: bytes = b"") -> RawClient:
    c = RawClient(proxy.port)
    c.send(
        f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Proxy-Authorization: {basic(*user.auth)}\r\n\r\n".encode()
        + early
    )
    r = c.response(head_only=True)
    assert r.status == 200
    return c


class TunnelTests:
    def test_requests_https_through_connect_to_self_signed_origin(
        self, proxy, proxy_users, tls_origin
    ) -> None:
        server, cert = tls_origin
        u = proxy_users["px-alice"]
        px = f"http://{u.login}:{u.secret}@127.0.0.1:{proxy.port}"
        with requests.Session() as s:
            for _ in range(2):
                r = s.get(
                    f"https://127.0.0.1:{server.port}/big?n=300000",
                    proxies={"https": px},
                    verify=str(cert),
                    timeout=10,
                )
                assert r.status_code == 200 and r.content == b"x" * 300000

    def test_curl_https_through_connect(self, proxy, proxy_users, tls_origin) -> None:
        server, cert = tls_origin
        u = proxy_users["px-alice"]
        out = subprocess.run(
            [
                "curl", "-s", "--cacert", str(cert), "-x", proxy.url,
                "-U", f"{u.login}:{u.secret}", f"https://127.0.0.1:{server.port}/hello",
            ],
            capture_output=True, timeout=20, check=True,
        )  # fmt: skip
        assert out.stdout == b"hello from origin"

    def test_bytes_sent_with_the_connect_head_are_forwarded(self, proxy, proxy_users, echo) -> None:
        c = open_tunnel(proxy, proxy_users["px-alice"], echo.port, early=b"early-bytes")
        assert c.recv_exact(len(b"early-bytes")) == b"early-bytes"
        c.send(b"more")
        assert c.recv_exact(4) == b"more"
        c.close()

    def test_half_close_is_passed_on(self, proxy, proxy_users, echo) -> None:
        c = open_tunnel(proxy, proxy_users["px-alice"], echo.port)
        c.send(b"ping")
        assert c.recv_exact(4) == b"ping"
        c.sock.shutdown(socket.SHUT_WR)
        # The echo origin sees EOF only if the proxy forwarded the half-close; it then
        # answers "bye" on the still-open direction and closes.
        assert c.recv_until_close() == b"bye"
        c.close()

    def test_idle_timeout_is_not_absolute(self, proxy, proxy_users, echo) -> None:
        # PROXY_TUNNEL_IDLE_TIMEOUT=2 in the daemon: 4 s of activity outlives it ...
        c = open_tunnel(proxy, proxy_users["px-alice"], echo.port)
        for i in range(8):
            c.send(b"%d" % i)
            assert c.recv_exact(1) == b"%d" % i
            time.sleep(0.5)
        # ... and silence ends the tunnel (bounded wait, far above the 2 s timeout).
        c.sock.settimeout(10)
        assert c.recv_until_close() == b""
        c.close()

    def test_tls_handshake_through_raw_tunnel(self, proxy, proxy_users, tls_origin) -> None:
        server, cert = tls_origin
        c = open_tunnel(proxy, proxy_users["px-alice"], server.port)
        ctx = ssl.create_default_context(cafile=str(cert))
        with ctx.wrap_socket(c.sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"hello from origin")
