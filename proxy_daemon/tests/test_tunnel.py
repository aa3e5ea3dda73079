"""CONNECT tunnels: through the daemon (TLS origin, early data, half-close, idle timeout)
and the relay in-process (billing of a stalled send)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import time

import gevent
import requests
from gevent import socket as gsocket

from goproxy_site.tests.support.proxy import E2E, open_tunnel
from proxy_daemon.sockio import BufferPool
from proxy_daemon.tunnel import Tunnel


@E2E
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


class RelayTests:
    """The relay itself, on in-process gevent sockets."""

    def test_a_stalled_tunnel_bills_exactly_what_its_client_got(self) -> None:
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
