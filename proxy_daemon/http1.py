"""HTTP/1.1 message parsing and building for the proxy: request/response heads, framing.

Everything that decides how many bytes belong to a message lives here, because a
framing mistake is a request-smuggling bug. Ambiguous framing (Content-Length with
Transfer-Encoding, differing Content-Lengths, unknown codings) is refused, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NoReturn, Protocol

import cython

from .errors import (
    BadGateway,
    BadRequest,
    HeadersTooLarge,
    NotImplementedByProxy,
    ProxyError,
    VersionNotSupported,
)

CRLF = b"\r\n"
# The hop-by-hop fields: Connection and those RFC 9110 §7.6.1 names, Trailer (RFC 2616's
# list), and the proxy authentication fields, which this proxy consumes (RFC 9110 §11.7).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Fields the proxy reads or rewrites itself, on top of the hop-by-hop ones.
UPSTREAM_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "expect", "via"}
CLIENT_RESPONSE_DROP = HOP_BY_HOP | {"content-length", "via"}
# The fields the fast parsers extract; everything else is forwarded verbatim.
SPECIAL_FIELDS = UPSTREAM_REQUEST_DROP | CLIENT_RESPONSE_DROP


_CLOSE_FIELD_RE = re.compile(r"\n(?i:close):")
TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
HOST_RE = re.compile(r"^[A-Za-z0-9._~\-]+$")
VERSION_RE = re.compile(r"^HTTP/(\d)\.(\d)$")
TARGET_BAD_RE = re.compile(r"[\x00-\x20\x7f]")
CHUNK_LINE_MAX = 4096
_EMPTY: list[str] = []

# The classes built or read on every request are `cython.cclass`: compiled (see
# proxy_daemon/compiled.py) they are extension types whose attributes are struct fields,
# so their own methods reach them without a dictionary or descriptor look-up; as plain
# Python they are ordinary classes (each declaration is then a class attribute of None).


@cython.cclass
class Headers:
    """An ordered multi-map of header fields; look-ups take lower-case names.

    Heads taken by the fast parsers are lazy: only the fields the proxy itself reads
    (SPECIAL_FIELDS) are extracted up front, together with the field lines it forwards
    untouched; the full item list and index are built only if something asks for them.
    """

    _connection: list[str] | None = cython.declare(object, visibility="public")
    _index: dict[str, list[str]] | None = cython.declare(object, visibility="public")
    _items: list[tuple[str, str]] | None = cython.declare(object, visibility="public")
    _spans: list[tuple[str, int, int]] = cython.declare(object, visibility="public")
    _special: dict[str, list[str]] | None = cython.declare(object, visibility="public")
    _start: int = cython.declare(object, visibility="public")
    _text: str = cython.declare(object, visibility="public")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items = items or []
        self._index = None
        self._special = None
        self._connection = None
        self._spans = []
        self._text = ""
        self._start = 0

    @classmethod
    def lazy(
        cls,
        text: str,
        start: int,
        special: dict[str, list[str]],
        spans: list[tuple[str, int, int]],
    ) -> Headers:
        """Fields of the validated CRLF block text[start:]; `special` holds the
        SPECIAL_FIELDS ones (lower-case names), `spans` their lines (name, begin, end)."""
        headers = cls.__new__(cls)
        headers._items = headers._index = headers._connection = None
        headers._special = special
        headers._spans = spans
        headers._text = text
        headers._start = start
        return headers

    @property
    def items(self) -> list[tuple[str, str]]:
        items = self._items
        if items is None:
            items = self._items = [
                (n, v.rstrip(" \t") if v.endswith((" ", "\t")) else v)
                for n, v in FIELD_FIND_RE.findall(self._text, self._start)
            ]
        return items

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for n, v in self.items:
                index.setdefault(n.lower(), []).append(v)
            self._index = index
        return index

    def get_all(self, name: str) -> list[str]:
        """Values of field `name`, which must be given in lower case."""
        special = self._special
        if special is not None and name in SPECIAL_FIELDS:
            return special.get(name, _EMPTY)
        return self._lookup().get(name, _EMPTY)

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of all `name` fields, lower-cased."""
        special = self._special
        if special is not None and name in SPECIAL_FIELDS:
            values = special.get(name)
        else:
            values = self._lookup().get(name)
        if not values:
            return _EMPTY
        if len(values) == 1 and "," not in values[0]:
            token = values[0].strip().lower()
            return [token] if token else _EMPTY
        out: list[str] = []
        for value in values:
            out += [t.strip().lower() for t in value.split(",") if t.strip()]
        return out

    def connection_tokens(self) -> list[str]:
        """Tokens of Connection and Proxy-Connection together (the hop-by-hop options)."""
        tokens = self._connection
        if tokens is None:
            special = self._special
            if special is not None and "connection" not in special:
                if "proxy-connection" not in special:
                    tokens = _EMPTY
                else:
                    tokens = self.tokens("proxy-connection")
            else:
                tokens = self.tokens("connection") + self.tokens("proxy-connection")
            self._connection = tokens
        return tokens

    def kept_lines(self, drop: frozenset[str]) -> str | None:
        """The verbatim field lines left after removing `drop` (each ending in CRLF), for
        heads the fast parser took, when Connection names nothing beyond `drop`."""
        if self._special is None:
            return None
        for option in self.connection_tokens():
            if option not in drop and (
                option != "close" or _CLOSE_FIELD_RE.search(self._text, self._start - 1)
            ):
                return None  # a field named in Connection must go too: general path
        text = self._text
        parts: list[str] = []
        pos = self._start
        for name, begin, end in self._spans:
            if name in drop:
                if begin > pos:
                    parts.append(text[pos:begin])
                pos = end
        if not parts:
            return text[pos:-2]
        parts.append(text[pos:-2])
        return "".join(parts)

    def __contains__(self, name: object) -> bool:
        special = self._special
        if special is not None and name in SPECIAL_FIELDS:
            return name in special
        return name in self._lookup()


@cython.cclass
class Request:
    """A parsed request head (one per proxied request)."""

    _keep_alive: bool | None = cython.declare(object, visibility="public")
    authority: str = cython.declare(object, visibility="public")
    head_size: int = cython.declare(object, visibility="public")
    headers: Headers = cython.declare(object, visibility="public")
    host: str = cython.declare(object, visibility="public")
    method: str = cython.declare(object, visibility="public")
    path: str = cython.declare(object, visibility="public")
    port: int = cython.declare(object, visibility="public")
    target: str = cython.declare(object, visibility="public")
    version: tuple[int, int] = cython.declare(object, visibility="public")

    def __init__(
        self,
        method: str,
        target: str,
        version: tuple[int, int],
        headers: Headers,
        head_size: int,
        host: str = "",
        port: int = 0,
        path: str = "/",
        authority: str = "",
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.head_size = head_size
        # Filled for absolute-form and CONNECT targets.
        self.host = host
        self.port = port
        self.path = path
        self.authority = authority
        self._keep_alive = None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target} HTTP/{self.version[0]}.{self.version[1]})"

    @property
    def is_connect(self) -> bool:
        return self.method == "CONNECT"

    @property
    def wants_keep_alive(self) -> bool:
        keep = self._keep_alive
        if keep is None:
            conn = self.headers.connection_tokens()
            if self.version >= (1, 1):
                keep = "close" not in conn
            else:
                keep = "keep-alive" in conn
            self._keep_alive = keep
        return keep


@cython.cclass
class Response:
    """A parsed response head."""

    head_size: int = cython.declare(object, visibility="public")
    headers: Headers = cython.declare(object, visibility="public")
    reason: str = cython.declare(object, visibility="public")
    status: int = cython.declare(object, visibility="public")
    version: tuple[int, int] = cython.declare(object, visibility="public")

    def __init__(
        self, status: int, reason: str, version: tuple[int, int], headers: Headers, head_size: int
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.head_size = head_size

    def __repr__(self) -> str:
        return f"Response({self.status} {self.reason})"


@cython.cclass
class BodyFraming:
    """How a message body is delimited: none, length (n bytes), chunked, or until close."""

    kind: str = cython.declare(object, visibility="public")
    length: int = cython.declare(object, visibility="public")

    def __init__(self, kind: str, length: int = 0) -> None:
        self.kind = kind
        self.length = length

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BodyFraming):
            return NotImplemented
        return self.kind == other.kind and self.length == other.length

    def __hash__(self) -> int:
        return hash((self.kind, self.length))

    def __repr__(self) -> str:
        return f"BodyFraming({self.kind!r}, {self.length})"


NO_BODY = BodyFraming("none")


def _is_ascii_digits(text: str) -> bool:
    """str.isdigit() also accepts digits such as '²' that int() refuses."""
    return text.isascii() and text.isdigit()


def head_end(buf: bytes | bytearray) -> int | None:
    """Index just past the blank line that ends a head (CRLFCRLF or bare LF forms)."""
    idx = buf.find(b"\n\r\n")
    # Once a CRLF end is found, only a bare-LF end before it could win: don't scan the
    # body bytes that often share the buffer.
    idx2 = buf.find(b"\n\n") if idx < 0 else buf.find(b"\n\n", 0, idx + 2)
    if idx < 0:
        return idx2 + 2 if idx2 >= 0 else None
    if idx2 < 0 or idx + 3 <= idx2 + 2:
        return idx + 3
    return idx2 + 2


def _split_lines(head: bytes) -> list[str]:
    text = head.decode("latin-1")
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if "\r" in text:
        raise BadRequest("bare CR in message head")
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return lines


FIELD_RE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)")


def _parse_fields(lines: list[str], max_count: int, error: type[ProxyError]) -> Headers:
    if len(lines) > max_count:
        raise HeadersTooLarge(f"more than {max_count} header fields")
    fields: list[tuple[str, str]] = []
    match = FIELD_RE.fullmatch
    for line in lines:
        m = match(line)
        if m is None:
            _field_error(line, error)
        fields.append((m[1], m[2]))
    return _headers_from(fields)


def _headers_from(fields: list[tuple[str, str]]) -> Headers:
    """Headers from parsed (name, value) pairs, with the lower-case name index built once."""
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    for name, value in fields:
        if value.endswith((" ", "\t")):
            value = value.rstrip(" \t")
        items.append((name, value))
        lname = name.lower()
        values = index.get(lname)
        if values is None:
            index[lname] = [value]
        else:
            values.append(value)
    headers = Headers(items)
    headers._index = index
    return headers


def _field_error(line: str, error: type[ProxyError]) -> NoReturn:
    """Raise the precise error for a header line the fast pattern refused."""
    if not line:
        raise error("empty line inside the header block")
    if line[0] in " \t":
        raise error("obsolete line folding is not accepted")
    name, sep, _value = line.partition(":")
    if not sep:
        raise error(f"header line without a colon: {line[:40]!r}")
    if not TOKEN_RE.match(name):
        raise error(f"invalid header name: {name[:40]!r}")
    raise error(f"control character in header {name!r}")


# Fast paths for well-formed CRLF heads. A head qualifies when it has no control
# character but CRLF pairs (one C-level translate), and one pass over the field block
# (_fields_fast) accepts its structure (a token and a colon starting every field line).
# Anything they refuse takes the line-by-line path below, which either accepts it the
# same way or names the exact problem.
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# Bytes allowed anywhere in a fast head: HTAB, SP..~ and obs-text (CR and LF are counted).
_HEAD_BYTES = bytes([9, 10, 13, *range(0x20, 0x7F), *range(0x80, 0x100)])
FIELD_FIND_RE = re.compile(r"(" + _TCHAR + r"+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)\r\n")
REQUEST_LINE_FAST_RE = re.compile(_TCHAR + r"+ [^\x00-\x20\x7f]+ HTTP/1\.[0-9]\r\n")
STATUS_LINE_FAST_RE = re.compile(r"HTTP/1\.([0-9]) ([1-5][0-9][0-9])(?: ([^\r\n]*))?\r\n")
TARGET_FAST_RE = re.compile(
    r"[hH][tT][tT][pP]://([A-Za-z0-9._~\-]+)(?::([0-9]{1,5}))?(/[^#]*)?(?:#.*)?"
)


def _clean_crlf_head(head: bytes) -> bool:
    """No control characters other than HTAB, and every CR and LF in a CRLF pair."""
    if head.translate(None, _HEAD_BYTES):
        return False
    lines = head.count(b"\n")
    return head.count(b"\r") == lines and head.count(b"\r\n") == lines


# First letters of the SPECIAL_FIELDS names, both cases: a field line starting with
# any other letter is forwarded without a look-up.
_SPECIAL_INITIALS = "".join(
    sorted({n[0] for n in SPECIAL_FIELDS} | {n[0].upper() for n in SPECIAL_FIELDS})
)


def _fields_fast(
    text: str, start: cython.Py_ssize_t, max_count: cython.Py_ssize_t
) -> Headers | None:
    """Lazy headers of text[start:] when it is a clean field block, else None.

    The caller has checked _clean_crlf_head (so every LF ends a CRLF). One pass over
    the block checks its structure (a token and a colon starting every field line, a
    blank line ending it) and collects the SPECIAL_FIELDS lines. Compiled, it is a C
    loop over the characters: the two regular expressions it replaced spent more
    instructions than the rest of a proxied request.
    """
    n: cython.Py_ssize_t = len(text)
    i: cython.Py_ssize_t = start
    line: cython.Py_ssize_t
    colon: cython.Py_ssize_t
    begin: cython.Py_ssize_t
    end: cython.Py_ssize_t
    count: cython.Py_ssize_t = 0
    c: cython.Py_UCS4
    special: dict[str, list[str]] = {}
    spans: list[tuple[str, int, int]] = []
    while True:
        if i >= n:
            return None
        c = text[i]
        if c == "\r":  # the blank line that ends the block, and the head
            if i + 2 == n and text[i + 1] == "\n":
                break
            return None
        line = i
        while i < n:
            c = text[i]
            if (
                ("a" <= c <= "z")
                or ("A" <= c <= "Z")
                or ("0" <= c <= "9")
                or c in "!#$%&'*+-.^_`|~"
            ):
                i += 1
            else:
                break
        if i == line or i >= n or text[i] != ":":
            return None
        colon = i
        i = text.find("\n", colon + 1)
        if i < 0:
            return None
        i += 1  # past the LF; the CR before it ends the value
        count += 1
        if text[line] not in _SPECIAL_INITIALS:
            continue
        name = text[line:colon].lower()
        if name not in SPECIAL_FIELDS:
            continue
        begin = colon + 1
        end = i - 2
        while begin < end and (text[begin] == " " or text[begin] == "\t"):
            begin += 1
        while end > begin and (text[end - 1] == " " or text[end - 1] == "\t"):
            end -= 1
        value = text[begin:end]
        values = special.get(name)
        if values is None:
            special[name] = [value]
        else:
            values.append(value)
        spans.append((name, line, i))
    if count > max_count:
        raise HeadersTooLarge(f"more than {max_count} header fields")
    return Headers.lazy(text, start, special, spans)


def _parse_request_fast(head: bytes, max_header_count: int) -> Request | None:
    if not _clean_crlf_head(head):
        return None
    text = head.decode("latin-1")
    m = REQUEST_LINE_FAST_RE.match(text)
    if m is None:
        return None
    headers = _fields_fast(text, m.end(), max_header_count)
    if headers is None:
        return None
    method, target, version_text = text[: m.end() - 2].split(" ")
    version = (1, ord(version_text[7]) - 48)
    special = headers._special
    assert special is not None  # lazy headers from the fast parser
    if len(special.get("host", _EMPTY)) > 1:
        raise BadRequest("more than one Host header")
    if method == "CONNECT":
        host, port = parse_authority(target, default_port=None)
        return Request(method, target, version, headers, len(head), host, port, "/", target)
    t = TARGET_FAST_RE.fullmatch(target)
    if t is None:
        return Request(method, target, version, headers, len(head), *parse_absolute_target(target))
    host, port_text, path = t.groups()
    port = 80 if port_text is None else int(port_text)
    if not 0 < port < 65536:
        raise BadRequest(f"invalid port {port_text!r}")
    host = host.lower()
    authority = host if port == 80 else f"{host}:{port}"
    return Request(method, target, version, headers, len(head), host, port, path or "/", authority)


def parse_request_head(head: bytes, *, max_header_count: int) -> Request:
    """Parse a request head; raise a ProxyError naming the problem."""
    fast = _parse_request_fast(head, max_header_count)
    if fast is not None:
        return fast
    return _parse_request_slow(head, max_header_count)


def _parse_request_slow(head: bytes, max_header_count: int) -> Request:
    """Line-by-line parsing: every form the fast path declines, and the precise errors."""
    lines = _split_lines(head)
    if not lines:
        raise BadRequest("empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not all(parts):
        raise BadRequest("malformed request line (expected 'METHOD target HTTP/1.1')")
    method, target, version_text = parts
    if not TOKEN_RE.match(method):
        raise BadRequest(f"invalid method {method[:20]!r}")
    m = VERSION_RE.match(version_text)
    if not m:
        raise BadRequest(f"invalid HTTP version {version_text[:20]!r}")
    version = (int(m.group(1)), int(m.group(2)))
    if version[0] != 1:
        raise VersionNotSupported(f"HTTP version {version_text} is not supported; use HTTP/1.1")
    if TARGET_BAD_RE.search(target):
        raise BadRequest("control character in request target")
    headers = _parse_fields(lines[1:], max_header_count, BadRequest)
    if len(headers.get_all("host")) > 1:
        raise BadRequest("more than one Host header")
    req = Request(method, target, version, headers, len(head))
    if method == "CONNECT":
        req.host, req.port = parse_authority(target, default_port=None)
        req.authority = target
    else:
        req.host, req.port, req.path, req.authority = parse_absolute_target(target)
    return req


def parse_authority(authority: str, *, default_port: int | None) -> tuple[str, int]:
    """host and port of `host[:port]` or `[v6][:port]`; BadRequest when invalid."""
    if not authority:
        raise BadRequest("empty host")
    if "@" in authority:
        raise BadRequest("user information in the request target is not accepted")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise BadRequest("unterminated IPv6 literal in target")
        host = authority[1:end]
        rest = authority[end + 1 :]
        if not host or not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise BadRequest("invalid IPv6 literal in target")
        if rest and not rest.startswith(":"):
            raise BadRequest("garbage after IPv6 literal in target")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_raw = authority.rpartition(":")
        if not sep:
            host, port_text = authority, None
        else:
            port_text = port_text_raw
        if not host or not HOST_RE.match(host):
            raise BadRequest(f"invalid host {host[:60]!r}")
    if port_text is None or port_text == "":
        if default_port is None:
            raise BadRequest("CONNECT target needs host:port")
        return host.lower(), default_port
    if not _is_ascii_digits(port_text) or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise BadRequest(f"invalid port {port_text[:10]!r}")
    return host.lower(), int(port_text)


def parse_absolute_target(target: str) -> tuple[str, int, str, str]:
    """host, port, origin-form path and authority of an absolute-form `http://` target."""
    lower = target[:8].lower()
    if target.startswith("/") or target == "*":
        raise BadRequest(
            "this is a proxy: send the absolute URI (http://host/path), not an origin-form path"
        )
    if lower.startswith("https://"):
        raise BadRequest("https:// targets must use CONNECT, this proxy does not terminate TLS")
    if not lower.startswith("http://"):
        raise BadRequest("only http:// absolute URIs are proxied")
    rest = target[7:]
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, path = rest[:cut], rest[cut:]
    host, port = parse_authority(authority, default_port=80)
    path = path.split("#", 1)[0]
    if not path or path.startswith("?"):
        path = "/" + path
    host_out = f"[{host}]" if ":" in host else host
    authority_out = host_out if port == 80 else f"{host_out}:{port}"
    return host, port, path, authority_out


def parse_response_head(head: bytes, *, max_header_count: int) -> Response:
    text = head.decode("latin-1")
    m = STATUS_LINE_FAST_RE.match(text) if _clean_crlf_head(head) else None
    if m is not None:
        try:
            headers = _fields_fast(text, m.end(), max_header_count)
        except HeadersTooLarge:
            raise BadGateway("upstream sent too many header fields") from None
        if headers is not None:
            minor, code, reason = m.groups()
            return Response(int(code), reason or "", (1, int(minor)), headers, len(head))
    return _parse_response_slow(head, max_header_count)


def _parse_response_slow(head: bytes, max_header_count: int) -> Response:
    try:
        lines = _split_lines(head)
    except BadRequest as exc:
        raise BadGateway(f"upstream sent a malformed response: {exc.message}") from None
    if not lines:
        raise BadGateway("upstream sent an empty response")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2:
        raise BadGateway("upstream sent a malformed status line")
    m = VERSION_RE.match(parts[0])
    if not m or int(m.group(1)) != 1:
        raise BadGateway("upstream sent an unsupported HTTP version")
    code = parts[1]
    if not (_is_ascii_digits(code) and len(code) == 3 and 100 <= int(code) <= 599):
        raise BadGateway("upstream sent an invalid status code")
    try:
        headers = _parse_fields(lines[1:], max_header_count, BadGateway)
    except HeadersTooLarge:
        raise BadGateway("upstream sent too many header fields") from None
    version = (int(m.group(1)), int(m.group(2)))
    reason = parts[2] if len(parts) > 2 else ""
    return Response(int(code), reason, version, headers, len(head))


def _content_length(headers: Headers, error: type[ProxyError]) -> int | None:
    raw = headers.get_all("content-length")
    if not raw:
        return None
    if len(raw) == 1:
        value = raw[0]
        if value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
    values = headers.tokens("content-length")
    if not values:
        raise error("invalid Content-Length")
    if any(not _is_ascii_digits(v) or len(v) > 18 for v in values):
        raise error("invalid Content-Length")
    if len(set(int(v) for v in values)) != 1:
        raise error("conflicting Content-Length values")
    return int(values[0])


def request_framing(req: Request) -> BodyFraming:
    te = req.headers.tokens("transfer-encoding")
    if te:
        if "content-length" in req.headers:
            raise BadRequest("both Transfer-Encoding and Content-Length present")
        if req.version < (1, 1):
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if te != ["chunked"]:
            raise NotImplementedByProxy(f"unsupported Transfer-Encoding {', '.join(te)!r}")
        return BodyFraming("chunked")
    length = _content_length(req.headers, BadRequest)
    if length:
        return BodyFraming("length", length)
    return NO_BODY


def response_framing(resp: Response, *, request_method: str) -> BodyFraming:
    """RFC 9112 §6.3 message body length of a response."""
    if request_method == "HEAD" or resp.status < 200 or resp.status in (204, 304):
        return NO_BODY
    te = resp.headers.tokens("transfer-encoding")
    if te:
        if te[-1] != "chunked":
            return BodyFraming("close")
        if te != ["chunked"]:
            raise BadGateway(f"upstream used unsupported Transfer-Encoding {', '.join(te)!r}")
        return BodyFraming("chunked")
    length = _content_length(resp.headers, BadGateway)
    if length is not None:
        return BodyFraming("length", length) if length else NO_BODY
    return BodyFraming("close")


class BodyReader(Protocol):
    """Buffered reads of a message body (sockio.Reader)."""

    def read_some(self, limit: int) -> bytes: ...

    def readline(self, limit: int, error: type[ProxyError]) -> bytes: ...


def iter_chunked(reader: BodyReader, error: type[ProxyError], piece: int) -> Iterator[bytes]:
    """Decode a chunked body into re-encoded chunk frames (size line, data pieces, CRLF).

    Chunk extensions and trailer fields are dropped; the terminating `0\\r\\n\\r\\n` is
    yielded last. Data is streamed in pieces of at most `piece` bytes, never buffered whole.
    """
    while True:
        line = reader.readline(CHUNK_LINE_MAX, error).rstrip(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
            raise error(f"invalid chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            # Trailer section: fields until an empty line.
            for _ in range(1000):
                trailer = reader.readline(CHUNK_LINE_MAX, error)
                if trailer in (b"\r\n", b"\n"):
                    break
            else:
                raise error("too many trailer fields")
            yield b"0\r\n\r\n"
            return
        yield b"%x\r\n" % size
        remaining = size
        while remaining:
            data = reader.read_some(min(remaining, piece))
            remaining -= len(data)
            yield data
        end = reader.readline(CHUNK_LINE_MAX, error)
        if end not in (b"\r\n", b"\n"):
            raise error("chunk data not followed by CRLF")
        yield CRLF


def iter_length(reader: BodyReader, length: int, piece: int) -> Iterator[bytes]:
    remaining = length
    while remaining:
        data = reader.read_some(min(remaining, piece))
        remaining -= len(data)
        yield data


def forwardable(headers: Headers, *, drop: frozenset[str] = HOP_BY_HOP) -> list[tuple[str, str]]:
    """Header fields minus `drop` (hop-by-hop ones by default) and those named in Connection."""
    named = headers.connection_tokens()
    if named:
        drop = drop.union(named)
    return [(n, v) for n, v in headers.items if n.lower() not in drop]


def via_value(existing: str | None, version: tuple[int, int], name: str) -> str:
    mine = f"{version[0]}.{version[1]} {name}"
    return f"{existing}, {mine}" if existing else mine


def build_upstream_request(req: Request, framing: BodyFraming, *, via_name: str) -> bytes:
    headers = req.headers
    kept = headers.kept_lines(UPSTREAM_REQUEST_DROP)
    if kept is None:
        kept = _field_lines(forwardable(headers, drop=UPSTREAM_REQUEST_DROP))
    via = via_value(headers.get("via"), req.version, via_name)
    if framing.kind == "length":
        tail = f"Content-Length: {framing.length}\r\n\r\n"
    elif framing.kind == "chunked":
        tail = "Transfer-Encoding: chunked\r\n\r\n"
    elif req.method in ("POST", "PUT", "PATCH"):
        tail = "Content-Length: 0\r\n\r\n"
    else:
        tail = "\r\n"
    return (
        f"{req.method} {req.path} HTTP/1.1\r\nHost: {req.authority}\r\n{kept}Via: {via}\r\n{tail}"
    ).encode("latin-1")


def _field_lines(fields: list[tuple[str, str]]) -> str:
    return "".join([f"{n}: {v}\r\n" for n, v in fields])


def build_client_response_head(
    resp: Response, out_framing: BodyFraming, *, keep_alive: bool, via_name: str
) -> bytes:
    headers = resp.headers
    kept = headers.kept_lines(CLIENT_RESPONSE_DROP)
    if kept is None:
        kept = _field_lines(forwardable(headers, drop=CLIENT_RESPONSE_DROP))
    via = via_value(headers.get("via"), resp.version, via_name)
    if out_framing.kind == "length":
        tail = f"Content-Length: {out_framing.length}\r\n"
    elif out_framing.kind == "chunked":
        tail = "Transfer-Encoding: chunked\r\n"
    elif out_framing.kind == "none" and "content-length" in headers and resp.status >= 200:
        # HEAD and 304 keep the origin's Content-Length as metadata.
        tail = f"Content-Length: {headers.tokens('content-length')[0]}\r\n"
    else:
        tail = ""
    if resp.status >= 200:
        tail += "Connection: keep-alive\r\n\r\n" if keep_alive else "Connection: close\r\n\r\n"
    else:
        tail += "\r\n"
    return (f"HTTP/1.1 {resp.status} {resp.reason or '-'}\r\n{kept}Via: {via}\r\n{tail}").encode(
        "latin-1"
    )
