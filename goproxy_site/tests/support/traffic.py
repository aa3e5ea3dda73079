"""Client side of the end-to-end tests: a paced origin, raw GETs through the proxy that
count every wire byte per user, background load, and polling.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from goproxy_site.tests.support.proxy import basic

WAIT = 20.0  # upper bound for anything that should take a few seconds


T = TypeVar("T")


class StreamHandler(BaseHTTPRequestHandler):
    """/stream?n=BYTES&rate=BYTES_PER_S paces a body so cuts are seen when they happen."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: int(v[0]) for k, v in parse_qs(url.query).items()}
        n = q.get("n", 100)
        rate = q.get("rate", 0)
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        chunk = 32 * 1024
        sent = 0
        start = time.monotonic()
        try:
            while sent < n:
                k = min(chunk, n - sent)
                self.wfile.write(b"x" * k)
                sent += k
                if rate:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            return


class StreamOrigin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StreamHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


@dataclass
class UserTraffic:
    """Client-side wire bytes of one proxy user, and when they crossed a limit."""

    login: str
    secret: str
    limit: int | None = None
    user_id: int = 0
    sent: int = 0
    received: int = 0
    crossed_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sent: int = 0, received: int = 0) -> None:
        with self.lock:
            self.sent += sent
            self.received += received
            if self.limit and self.crossed_at is None and self.sent + self.received >= self.limit:
                self.crossed_at = time.monotonic()

    @property
    def total(self) -> tuple[int, int]:
        return (self.sent, self.received)


@dataclass
class Response:
    status: int
    body: bytes
    ended_at: float
    complete: bool


def fetch(proxy_port: int, user: UserTraffic, origin_port: int, path: str) -> Response:
    """One GET through the proxy on a raw socket; every byte is added to `user`."""
    head = (
        f"GET http://127.0.0.1:{origin_port}{path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{origin_port}\r\n"
        f"Proxy-Authorization: {basic(user.login, user.secret)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    data = bytearray()
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=WAIT) as sock:
        sock.sendall(head)
        sent = len(head)
        counted = False
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and not counted:
                    status = int(data.split(b" ", 2)[1])
                    counted = status != 403
                    if counted:
                        user.add(sent=sent)
                if counted:
                    user.add(received=len(chunk))
        except ConnectionResetError:
            pass
    ended = time.monotonic()
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        # Closed before any response: only an admitted request is cut that way (a
        # restriction that arrives mid-request), and the proxy took its head for the user.
        user.add(sent=sent)
    status = int(data.split(b" ", 2)[1]) if head_end > 0 else 0
    body = bytes(data[head_end + 4 :]) if head_end > 0 else b""
    length = 0
    for line in data[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return Response(status, body, ended, complete=len(body) == length)
