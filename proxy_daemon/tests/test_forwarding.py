"""HTTP forwarding through the real daemon, with curl, requests, httpx and raw sockets."""

from __future__ import annotations

import json
import subprocess

import httpx
import requests

from goproxy_site.tests.support.proxy import E2E, RawClient, basic

pytestmark = E2E


def _get(login: str, secret: str, url: str) -> bytes:
    return (
        f"GET {url} HTTP/1.1\r\nHost: ignored\r\n"
        f"Proxy-Authorization: {basic(login, secret)}\r\n\r\n"
    ).encode()


class ForwardingTests:
    def test_curl_get_through_proxy(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]
        out = subprocess.run(
            ["curl", "-s", "-x", proxy.url, "-U", f"{u.login}:{u.secret}", origin.url("/hello")],
            capture_output=True,
            timeout=20,
            check=True,
        )
        assert out.stdout == b"hello from origin"

    def test_requests_post_body_and_headers_rewritten(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]
        px = f"http://{u.login}:{u.secret}@127.0.0.1:{proxy.port}"
        r = requests.post(
            origin.url("/echo?x=1"),
            data=b"a" * 1000,
            headers={"Connection": "X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "300"},
            proxies={"http": px},
            timeout=10,
        )
        assert r.status_code == 200
        info = r.json()
        names = {k.lower() for k, _v in info["headers"]}
        assert info["path"] == "/echo?x=1"
        assert info["body_len"] == 1000
        for hop in ("proxy-authorization", "proxy-connection", "keep-alive", "x-secret-hop", "te"):
            assert hop not in names
        via = dict((k.lower(), v) for k, v in info["headers"])["via"]
        assert via == "1.1 goproxy"
        assert r.headers["Via"] == "1.1 goproxy"

    def test_chunked_both_ways(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]

        def gen():
            yield b"first-"
            yield b"second-"
            yield b"third"

        with httpx.Client(proxy=f"http://{u.login}:{u.secret}@127.0.0.1:{proxy.port}") as c:
            r = c.post(origin.url("/echo"), content=gen())
            assert r.status_code == 200
            info = r.json()
            assert info["body_len"] == len(b"first-second-third")
            assert info["body_head"] == "first-second-third"
            assert ["Transfer-Encoding", "chunked"] in info["headers"]
            r2 = c.get(origin.url("/chunked?parts=one,two,three"))
            assert r2.text == "onetwothree"
            assert r2.headers["transfer-encoding"] == "chunked"
            assert "x-drop-me" not in r2.headers
            assert "keep-alive" not in r2.headers

    def test_keep_alive_reuses_client_and_upstream_connections(
        self, proxy, proxy_users, origin
    ) -> None:
        u = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        ports = []
        for _ in range(3):
            c.send(_get(u.login, u.secret, origin.url("/hello")))
            r = c.response()
            assert r.status == 200 and r.body == b"hello from origin"
            assert r.header("Connection") == "keep-alive"
            ports.append(r.header("X-Upstream-Port"))
        c.close()
        # A second client connection is served from the same pooled upstream connection.
        c2 = RawClient(proxy.port)
        c2.send(_get(u.login, u.secret, origin.url("/hello")))
        ports.append(c2.response().header("X-Upstream-Port"))
        c2.close()
        assert len(set(ports)) == 1, ports

    def test_pipelined_requests_answered_in_order(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        batch = (
            b"".join(_get(u.login, u.secret, origin.url(f"/echo?n={i}")) for i in range(5))
            + (
                f"POST {origin.url('/echo?n=5')} HTTP/1.1\r\nProxy-Authorization: "
                f"{basic(u.login, u.secret)}\r\nContent-Length: 3\r\n\r\nabc"
            ).encode()
            + _get(u.login, u.secret, origin.url("/echo?n=6"))
        )
        c.send(batch)
        for i in range(7):
            r = c.response()
            assert r.status == 200
            info = json.loads(r.body)
            assert info["path"] == f"/echo?n={i}"
        c.close()

    def test_head_204_304_have_no_body(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        c.send(
            (
                f"HEAD {origin.url('/hello')} HTTP/1.1\r\n"
                f"Proxy-Authorization: {basic(u.login, u.secret)}\r\n\r\n"
            ).encode()
        )
        r = c.response(head_only=True)
        assert r.status == 200 and r.header("Content-Length") == "17"
        for code in (204, 304):
            c.send(_get(u.login, u.secret, origin.url(f"/status?code={code}")))
            assert c.response().status == code
        # The connection is still in sync after body-less responses.
        c.send(_get(u.login, u.secret, origin.url("/hello")))
        assert c.response().body == b"hello from origin"
        c.close()

    def test_expect_100_continue(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        c.send(
            (
                f"PUT {origin.url('/echo')} HTTP/1.1\r\n"
                f"Proxy-Authorization: {basic(u.login, u.secret)}\r\n"
                "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
            ).encode()
        )
        interim = c.response()
        assert interim.status == 100
        c.send(b"hello")
        r = c.response()
        assert r.status == 200 and json.loads(r.body)["body_len"] == 5
        c.close()

    def test_expect_with_bad_credentials_gets_407_before_body(
        self, proxy, proxy_users, origin
    ) -> None:
        c = RawClient(proxy.port)
        c.send(
            (
                f"PUT {origin.url('/echo')} HTTP/1.1\r\n"
                f"Proxy-Authorization: {basic('px-alice', 'nope')}\r\n"
                "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
            ).encode()
        )
        r = c.response()
        assert r.status == 407
        assert r.header("Connection") == "close"
        c.close()

    def test_http10_client_gets_dechunked_body_and_close(self, proxy, proxy_users, origin) -> None:
        u = proxy_users["px-alice"]
        c = RawClient(proxy.port)
        c.send(
            f"GET {origin.url('/chunked?parts=ab,cd')} HTTP/1.0\r\n"
            f"Proxy-Authorization: {basic(u.login, u.secret)}\r\n\r\n".encode()
        )
        r = c.response()
        assert r.status == 200
        assert r.header("Transfer-Encoding") is None
        assert r.header("Connection") == "close"
        assert r.body == b"abcd"
        c.close()
