"""The proxy's admin port: `/healthz` (JSON) and `/metrics` (Prometheus exposition).

A small gevent WSGI server in the proxy process, off unless PROXY_ADMIN_PORT (or
`runproxy --admin-port`) is set, bound to 127.0.0.1 unless PROXY_ADMIN_HOST says
otherwise. It holds no secrets: no user ids or logins are exposed, only counts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .metrics import health

logger = logging.getLogger(__name__)

MAX_ADMIN_CONNECTIONS = 16

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class AdminApp:
    """WSGI app for the admin port."""

    def __init__(
        self, *, server: Any, reporter: Any, plugins: Iterable[Any], registry: CollectorRegistry
    ) -> None:
        self.server = server
        self.reporter = reporter
        self.plugins = list(plugins)
        self.registry = registry

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return self._reply(start_response, 405, b"only GET and HEAD\n", "text/plain")
        if path == "/healthz":
            code, body = health(self.server, self.reporter, self.plugins)
            return self._reply(
                start_response, code, json.dumps(body).encode() + b"\n", "application/json"
            )
        if path == "/metrics":
            return self._reply(start_response, 200, generate_latest(self.registry), None)
        return self._reply(start_response, 404, b"not found: try /healthz or /metrics\n", None)

    def _reply(
        self, start_response: StartResponse, code: int, body: bytes, content_type: str | None
    ) -> list[bytes]:
        reasons = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}
        headers = [
            ("Content-Type", content_type or CONTENT_TYPE_LATEST),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        if code == 404:
            headers[0] = ("Content-Type", "text/plain; charset=utf-8")
        start_response(f"{code} {reasons.get(code, 'Error')}", headers)
        return [body]


def admin_server_start(host: str, port: int, app: AdminApp) -> Any:
    """Start the admin WSGI server on the gevent hub; OSError if the port is unavailable."""
    from gevent.pool import Pool
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(
        (host, port), app, spawn=Pool(MAX_ADMIN_CONNECTIONS), log=None, error_log=logger
    )
    server.start()
    return server
