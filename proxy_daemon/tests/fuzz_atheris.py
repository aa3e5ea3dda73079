"""Coverage-guided fuzzing of the request, response and auth parsers (opt-in: `make fuzz`).

Not collected by pytest. Runs a bounded number of inputs (FUZZ_RUNS, default 200000)
and fails on any exception that is not a ProxyError with an expected status.
Usage: .venv/bin/python proxy_daemon/tests/fuzz_atheris.py [-runs=N] [corpus_dir]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# atheris instruments Python bytecode: fuzz the sources, not the Cython builds. The
# package goes first, so that its source-first finder sits behind atheris's import hook.
os.environ["GOPROXY_PURE_PYTHON"] = "1"
import proxy_daemon  # noqa: F401

with atheris.instrument_imports():
    from proxy_daemon import http1
    from proxy_daemon.auth import parse_basic
    from proxy_daemon.errors import ProxyError

REQUEST_STATUSES = {400, 431, 501, 505}


def one_input(data: bytes) -> None:
    try:
        req = http1.parse_request_head(data, max_header_count=100)
        if not req.is_connect:
            http1.request_framing(req)
        _ = req.wants_keep_alive
        header = req.headers.get("proxy-authorization")
        if header is not None:
            try:
                parse_basic(header)
            except ProxyError as exc:
                assert exc.status == 407, exc
    except ProxyError as exc:
        assert exc.status in REQUEST_STATUSES, exc
    try:
        resp = http1.parse_response_head(data, max_header_count=100)
        http1.response_framing(resp, request_method="GET")
    except ProxyError as exc:
        assert exc.status == 502, exc


SEEDS = [
    b"GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n"
    b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\nConnection: keep-alive\r\n\r\n",
    b"POST http://[::1]:8080/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"PUT http://a:81/ HTTP/1.0\nContent-Length: 5\nExpect: 100-continue\n\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic Og==\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
    b"HTTP/1.0 304 Not Modified\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
]


def main() -> None:
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="goproxy-fuzz-"))
        for i, seed in enumerate(SEEDS):
            (corpus / f"seed{i}").write_bytes(seed)
        args.append(str(corpus))
    if not any(a.startswith("-runs=") for a in args):
        args.append(f"-runs={os.environ.get('FUZZ_RUNS', '200000')}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
