"""Coverage-guided fuzzing of the request, response and auth parsers (opt-in: `make fuzz`).

Not collected by pytest. Runs a bounded number of inputs (FUZZ_RUNS, default 200000)
and fails on any exception that is not a ProxyError with an expected status.
Usage: .venv/bin/python proxy_daemon/tests/fuzz_atheris.py [-runs=N] [corpus_dir]
"""

from __future__ import annotations

import os
import sys

import atheris

with atheris.instrument_imports():
    from proxy_daemon import http
    from proxy_daemon.auth import parse_basic
    from proxy_daemon.errors import ProxyError

REQUEST_STATUSES = {400, 431, 501, 505}


def one_input(data: bytes) -> None:
    try:
        req = http.parse_request_head(data, max_header_count=100)
        if not req.is_connect:
            http.request_framing(req)
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
        resp = http.parse_response_head(data, max_header_count=100)
        http.response_framing(resp, request_method="GET")
    except ProxyError as exc:
        assert exc.status == 502, exc


def main() -> None:
    args = list(sys.argv)
    if not any(a.startswith("-runs=") for a in args):
        args.append(f"-runs={os.environ.get('FUZZ_RUNS', '200000')}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
