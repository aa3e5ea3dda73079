"""http1: request/response head parsing, framing and building, fast and line-by-line."""

from __future__ import annotations

import pytest

from proxy_daemon import http1
from proxy_daemon.errors import BadGateway
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
