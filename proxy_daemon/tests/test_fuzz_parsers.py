"""Property-based fuzzing of the request parser, the response parser and the auth parser.

No input may raise anything but a ProxyError, every refusal maps to a client-error
status, and the regex fast paths must agree exactly with the line-by-line parsers they
short-cut (same result, or the same error). The longer coverage-guided run is atheris:
`make fuzz` (proxy_daemon/tests/fuzz_atheris.py).
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy_daemon import http1
from proxy_daemon.auth import parse_basic
from proxy_daemon.errors import HeadersTooLarge, ProxyAuthRequired, ProxyError

REQUEST_STATUSES = {400, 431, 501, 505}
MAX_HEADERS = 20
FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Heads built from realistic pieces and then broken in realistic ways, so the examples
# reach deep into the parser instead of failing on the first byte.
methods = st.sampled_from(["GET", "POST", "CONNECT", "HEAD", "G(T", "", "get", "PUT"])
targets = st.sampled_from(
    [
        "http://example.com/",
        "http://Example.COM:8080/a?b=c#frag",
        "HTTP://example.com",
        "http://example.com:/x",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://example.com:²/",
        "http://[::1]:8080/",
        "http://u:p@example.com/",
        "http://example.com?x",
        "example.com:443",
        "example.com",
        "/relative",
        "https://example.com/",
        "*",
    ]
)
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1", "http/1.1", "HTTP/1.²"])
names = st.sampled_from(
    [
        "Host",
        "Proxy-Authorization",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "X-A",
        "Bad Name",
        "",
    ]
)
values = st.one_of(
    st.sampled_from(["example.com", "5", "²", "-1", "chunked", "gzip, chunked", "close", " a "]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=12),
)
seps = st.sampled_from([":", ": ", ":\t", " : ", ""])
eols = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r"])


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    line = f"{draw(methods)} {draw(targets)} {draw(versions)}"
    eol = draw(eols)
    fields = draw(st.lists(st.tuples(names, seps, values, eols), max_size=MAX_HEADERS + 3))
    text = line + eol + "".join(f"{n}{s}{v}{e}" for n, s, v, e in fields)
    text += draw(st.sampled_from(["\r\n", "\n"]))
    return text.encode("latin-1")


def outcome(fn, *args):
    """A comparable summary of a parse: the fields, or the error's status and message."""
    try:
        r = fn(*args)
    except ProxyError as exc:
        return ("error", exc.status, exc.message)
    if isinstance(r, http1.Request):
        return (r.method, r.target, r.version, r.headers.items, r.host, r.port, r.path,
                r.authority, r.head_size)  # fmt: skip
    return (r.status, r.reason, r.version, r.headers.items, r.head_size)


class RequestParserFuzzTests:
    @FUZZ
    @given(request_heads())
    @example(b"GET http://example.com/ HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n")
    @example(b"GET http://example.com:\xb2/ HTTP/1.1\r\n\r\n")
    def test_structured_heads_raise_only_client_errors(self, head: bytes) -> None:
        try:
            req = http1.parse_request_head(head, max_header_count=MAX_HEADERS)
            if not req.is_connect:
                http1.request_framing(req)
            # HTTP/1.1 persists unless asked to close; HTTP/1.0 only when asked to stay.
            conn = req.headers.tokens("connection") + req.headers.tokens("proxy-connection")
            expected = "close" not in conn if req.version >= (1, 1) else "keep-alive" in conn
            assert req.wants_keep_alive is expected
        except ProxyError as exc:
            assert exc.status in REQUEST_STATUSES, exc.message

    @FUZZ
    @given(st.binary(max_size=400))
    def test_random_bytes_raise_only_client_errors(self, head: bytes) -> None:
        try:
            http1.parse_request_head(head, max_header_count=MAX_HEADERS)
        except ProxyError as exc:
            assert exc.status in REQUEST_STATUSES, exc.message

    @FUZZ
    @given(request_heads())
    def test_fast_path_agrees_with_line_parser(self, head: bytes) -> None:
        try:
            declined = http1._parse_request_fast(head, MAX_HEADERS) is None
        except ProxyError:
            declined = False
        if declined:
            return  # the line parser alone decides
        fast = outcome(http1._parse_request_fast, head, MAX_HEADERS)
        assert fast == outcome(http1._parse_request_slow, head, MAX_HEADERS)

    def test_fast_path_takes_common_requests(self) -> None:
        head = b"GET http://Example.com:8080/p?q#f HTTP/1.1\r\nHost: a\r\nX-B: c \r\n\r\n"
        fast = http1._parse_request_fast(head, MAX_HEADERS)
        assert fast is not None
        assert outcome(lambda h: fast, head) == outcome(http1._parse_request_slow, head, 20)
        assert (fast.host, fast.port, fast.path) == ("example.com", 8080, "/p?q")

    def test_too_many_headers_is_431_on_both_paths(self) -> None:
        head = b"GET http://a/ HTTP/1.1\r\n" + b"X: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n"
        for parse in (http1._parse_request_fast, http1._parse_request_slow):
            with pytest.raises(HeadersTooLarge):
                parse(head, MAX_HEADERS)


@st.composite
def response_heads(draw: st.DrawFn) -> bytes:
    status = draw(
        st.sampled_from(
            [
                "HTTP/1.1 200 OK",
                "HTTP/1.1 204",
                "HTTP/1.0 304 Not Modified",
                "HTTP/1.1 099 x",
                "HTTP/1.1 600 x",
                "HTTP/2 200 OK",
                "HTTP/1.1 ²00 x",
                "HTTP/1.1  200 OK",
                "HTTP/1.1 200OK",
                "garbage",
            ]
        )
    )
    fields = draw(st.lists(st.tuples(names, seps, values, eols), max_size=MAX_HEADERS + 3))
    text = status + draw(eols) + "".join(f"{n}{s}{v}{e}" for n, s, v, e in fields) + "\r\n"
    return text.encode("latin-1")


class ResponseParserFuzzTests:
    @FUZZ
    @given(response_heads())
    def test_upstream_garbage_is_always_502(self, head: bytes) -> None:
        try:
            resp = http1.parse_response_head(head, max_header_count=MAX_HEADERS)
            http1.response_framing(resp, request_method="GET")
        except ProxyError as exc:
            assert exc.status == 502, exc.message

    @FUZZ
    @given(response_heads())
    def test_fast_path_agrees_with_line_parser(self, head: bytes) -> None:
        text = head.decode("latin-1")
        if http1.STATUS_LINE_FAST_RE.match(text) is None:
            return
        fast = outcome(lambda h: http1.parse_response_head(h, max_header_count=MAX_HEADERS), head)
        assert fast == outcome(http1._parse_response_slow, head, MAX_HEADERS)


class AuthParserFuzzTests:
    @FUZZ
    @given(st.one_of(st.text(max_size=80), st.binary(max_size=60).map(
        lambda b: "Basic " + base64.b64encode(b).decode()
    )))  # fmt: skip
    def test_any_header_is_credentials_or_407(self, header: str) -> None:
        try:
            login, secret = parse_basic(header)
        except ProxyAuthRequired as exc:
            # Every refusal names its problem in the 407 body.
            assert exc.message.strip()
            return
        assert login and secret
        assert ":" not in login
