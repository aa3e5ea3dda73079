"""Metering: the Meter itself, and exactness against what real clients sent and received."""

from __future__ import annotations

import json
import ssl

from goproxy_site.tests.support.proxy import E2E, RawClient, basic, open_tunnel
from proxy_daemon.hooks import TrafficDelta
from proxy_daemon.metering import Meter, flush
from proxy_daemon.reporters.local import MemoryReporter


class MeterTests:
    def test_swap_hands_over_each_byte_exactly_once(self) -> None:
        meter = Meter()
        meter.add(1, 10, 0)
        meter.add(1, 5, 7)
        meter.add(2, 0, 0)
        assert meter.swap() == [TrafficDelta(1, 15, 7)]
        assert meter.swap() == []
        meter.add(1, 1, 1)
        assert meter.swap() == [TrafficDelta(1, 1, 1)]

    def test_failed_report_keeps_the_bytes_for_the_next_interval(self) -> None:
        class Flaky(MemoryReporter):
            fail = True

            def report(self, deltas: list[TrafficDelta]) -> None:
                if self.fail:
                    self.fail = False
                    raise RuntimeError("broker down")
                super().report(deltas)

        meter, reporter = Meter(), Flaky()
        meter.add(3, 100, 200)
        assert flush(meter, reporter) == 0
        meter.add(3, 1, 2)
        assert flush(meter, reporter) == 1
        assert reporter.totals == {3: [101, 202]}


@E2E
class MeteringExactnessTests:
    def test_http_bytes_counted_equal_client_wire_bytes(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-meter-http"]
        auth = f"Proxy-Authorization: {basic(*u.auth)}\r\n"
        c = RawClient(proxy.port)
        c.send(f"GET {origin.url('/hello')} HTTP/1.1\r\n{auth}\r\n".encode())
        c.response()
        c.send(
            f"POST {origin.url('/echo')} HTTP/1.1\r\n{auth}Content-Length: 11\r\n\r\n".encode()
            + b"hello world"
        )
        c.response()
        c.send(
            f"POST {origin.url('/echo')} HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n"
            "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n".encode()
        )
        assert json.loads(c.response().body)["body_len"] == 11
        c.send(
            f"PUT {origin.url('/echo')} HTTP/1.1\r\n{auth}Expect: 100-continue\r\n"
            "Content-Length: 3\r\n\r\n".encode()
        )
        assert c.response().status == 100
        c.send(b"abc")
        c.response()
        # Two pipelined requests, then a HEAD and a chunked response.
        c.send(
            f"GET {origin.url('/big?n=70000')} HTTP/1.1\r\n{auth}\r\n".encode()
            + f"HEAD {origin.url('/hello')} HTTP/1.1\r\n{auth}\r\n".encode()
        )
        assert len(c.response().body) == 70000
        c.response(head_only=True)
        c.send(f"GET {origin.url('/chunked')} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n".encode())
        c.response()
        c.recv_until_close()
        c.close()
        expected = (c.sent, c.received)
        assert proxy.wait_meter(u.user_id, expected) == expected

    def test_tunnel_bytes_counted_equal_client_wire_bytes(self, proxy, proxy_users, echo) -> None:
        u = proxy_users["px-meter-tunnel"]
        c = open_tunnel(proxy, u, echo.port, early=b"x" * 1000)
        c.recv_exact(1000)
        payload = bytes(range(256)) * 4096  # 1 MiB
        c.send(payload)
        assert c.recv_exact(len(payload)) == payload
        c.sock.shutdown(1)
        assert c.recv_until_close() == b"bye"
        c.close()
        expected = (c.sent, c.received)
        assert proxy.wait_meter(u.user_id, expected) == expected

    def test_tls_tunnel_bytes_counted_equal_client_wire_bytes(
        self, proxy, proxy_users, tls_origin
    ) -> None:
        server, cert = tls_origin
        u = proxy_users["px-meter-tls"]
        c = open_tunnel(proxy, u, server.port)
        # TLS over memory BIOs so every ciphertext byte on the socket is counted.
        ctx = ssl.create_default_context(cafile=str(cert))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")

        def pump_out() -> None:
            data = outgoing.read()
            if data:
                c.send(data)

        def pump_in() -> bool:
            data = c.sock.recv(65536)
            c.received += len(data)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
            return bool(data)

        for _ in range(50):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump_out()
                pump_in()
        pump_out()
        tls.write(b"GET /big?n=200000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        pump_out()
        body = b""
        for _ in range(10_000):
            try:
                chunk = tls.read(65536)
                if not chunk:
                    break
                body += chunk
            except ssl.SSLWantReadError:
                pump_out()
                if not pump_in():
                    break
            except ssl.SSLZeroReturnError:
                break
        pump_out()
        # Drain until the origin (through the proxy) closes the tunnel.
        c.sock.settimeout(10)
        while pump_in():
            pass
        c.close()
        assert body.endswith(b"x" * 200000)
        expected = (c.sent, c.received)
        assert proxy.wait_meter(u.user_id, expected) == expected
