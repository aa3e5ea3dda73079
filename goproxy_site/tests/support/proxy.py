"""Test support: local origins (HTTP, TLS, raw TCP), the proxy subprocess, raw clients,
and the users and helpers the end-to-end modules share."""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import resource
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.db import connections

from goproxy_site.tests.support.net import free_port

ROOT = Path(settings.BASE_DIR)
START_TIMEOUT = 30.0


def basic(login: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()


# Origins ---------------------------------------------------------------------------
class OriginHandler(BaseHTTPRequestHandler):
    """Deterministic endpoints; every response says which upstream connection carried it."""

    protocol_version = "HTTP/1.1"
    server: OriginServer

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream-Port", str(self.client_address[1]))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _route(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.seen.append((self.command, self.path, dict(self.headers.items())))
        if url.path == "/echo":
            body = self._body()
            info = {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_len": len(body),
                "body_head": body[:64].decode("latin-1"),
            }
            self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
        elif url.path == "/sink":
            total = 0
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                total = len(self._body())
            else:
                remaining = int(self.headers.get("Content-Length") or 0)
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        break
                    remaining -= len(data)
                    total += len(data)
            self._send(200, str(total).encode())
        elif url.path == "/big":
            n = int(q.get("n", "1000"))
            self._body()
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = b"x" * (1 << 20)
            remaining = n
            while remaining:
                k = min(remaining, len(block))
                self.wfile.write(block[:k])
                remaining -= k
        elif url.path == "/chunked":
            self._body()
            parts = [p.encode() for p in q.get("parts", "alpha,beta,gamma").split(",")]
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "keep-alive, X-Drop-Me")
            self.send_header("X-Drop-Me", "hop")
            self.send_header("Keep-Alive", "timeout=5")
            self.end_headers()
            for p in parts:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
        elif url.path == "/status":
            self._body()
            self._send(int(q["code"]), b"" if q["code"] in ("204", "304") else b"body")
        elif url.path == "/slow":
            self._body()
            time.sleep(float(q.get("s", "3")))
            self._send(200, b"late")
        else:
            self._body()
            self._send(200, b"hello from origin", {"Content-Type": "text/plain"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _route


class OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OriginHandler)
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # clients (the proxy) hanging up early is part of the tests

    def start(self) -> OriginServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def make_tls_origin(tmp: Path) -> tuple[OriginServer, Path]:
    """An HTTPS origin with a self-signed certificate for 127.0.0.1 made by openssl."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = OriginServer()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server.start(), cert


class EchoHandler(socketserver.BaseRequestHandler):
    """Echoes bytes back; on the client's half-close, sends 'bye' and closes."""

    def handle(self) -> None:
        sock = self.request
        while True:
            data = sock.recv(65536)
            if not data:
                sock.sendall(b"bye")
                sock.shutdown(socket.SHUT_WR)
                return
            sock.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler] = EchoHandler) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        return None

    def start(self) -> EchoServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


class GarbageHandler(socketserver.BaseRequestHandler):
    """Reads a request head and answers with something that is not HTTP."""

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        self.request.sendall(b"NOT HTTP AT ALL\r\n\r\n")


# The proxy process -------------------------------------------------------------------
def db_url(alias: str) -> str:
    s = connections[alias].settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host = s.get("HOST") or "127.0.0.1"
    return f"postgres://{user}{password}@{host}:{s.get('PORT') or 5432}/{s['NAME']}"


class ProxyProcess:
    """`manage.py runproxy` in a subprocess on a free port, with its meter written to a file."""

    def __init__(
        self,
        tmp: Path,
        env: dict[str, str],
        settings_module: str,
        args: list[str] | None = None,
        *,
        nofile: int | None = None,
    ) -> None:
        self.tmp = tmp
        self.args = args or []
        self.nofile = nofile  # a hard RLIMIT_NOFILE for the daemon
        self.port = free_port()
        self.meter_file = tmp / "meter.jsonl"
        self.log_file = tmp / "proxy.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "ACCOUNTS_DATABASE_URL": db_url("default"),
            "PLANS_DATABASE_URL": db_url("plans"),
            "PROXY_REPORTER": "proxy_daemon.reporters.local.FileReporter",
            "PROXY_METER_FILE": str(self.meter_file),
            "PROXY_METER_INTERVAL": "0.2",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        # The line control plugin's and the admin server's ports, where a fixture sets them.
        self.control_port = 0
        self.admin_port = 0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "manage.py",
            "runproxy",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.args,
        ]

    def run(self, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
        """The daemon in the foreground until it exits, its output captured (for a start
        that must fail)."""
        return subprocess.run(
            self.command(), cwd=ROOT, env=self.env, capture_output=True, timeout=timeout
        )

    def start(self) -> ProxyProcess:
        log = open(self.log_file, "wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if self.nofile is None else self._limit_descriptors,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while b"listening on" not in self.log_file.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"proxy did not start: {self.log()}")
            time.sleep(0.05)
        return self

    def _limit_descriptors(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self, field: str = "VmRSS") -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc status")

    def meter_totals(self) -> dict[int, tuple[int, int]]:
        totals: dict[int, list[int]] = {}
        if not self.meter_file.exists():
            return {}
        for line in self.meter_file.read_text().splitlines():
            row = json.loads(line)
            if "user_id" in row:
                t = totals.setdefault(row["user_id"], [0, 0])
                t[0] += row["bytes_up"]
                t[1] += row["bytes_down"]
        return {uid: (up, down) for uid, (up, down) in totals.items()}

    def wait_meter(
        self, user_id: int, expected: tuple[int, int], timeout: float = 5.0
    ) -> tuple[int, int]:
        """The user's totals once they reach `expected` (or whatever they are at timeout)."""
        got = (0, 0)
        for _ in range(int(timeout / 0.05)):
            got = self.meter_totals().get(user_id, (0, 0))
            if got == expected:
                return got
            time.sleep(0.05)
        return got


# Raw clients -------------------------------------------------------------------------
class RawResponse:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, size: int):
        self.status = status
        self.headers = headers
        self.body = body
        self.size = size  # wire bytes of the whole response

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class RawClient:
    """A plain socket to the proxy that counts every byte sent and received."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sent = 0
        self.received = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 20)
        self.received += len(data)
        self.buf += data
        return bool(data)

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_until_close(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("closed in the middle of a line")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def response(self, *, head_only: bool = False) -> RawResponse:
        start = self.received - len(self.buf)
        status_line = self._line()
        status = int(status_line.split(b" ")[1])
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        resp = RawResponse(status, headers, b"", 0)
        body = b""
        te = (resp.header("Transfer-Encoding") or "").lower()
        if head_only or status < 200 or status in (204, 304):
            pass
        elif te == "chunked":
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self.recv_exact(size)
                self._line()
        elif resp.header("Content-Length") is not None:
            body = self.recv_exact(int(resp.header("Content-Length") or 0))
        else:
            body = self.recv_until_close()
        resp.body = body
        resp.size = self.received - len(self.buf) - start
        return resp

    def close(self) -> None:
        self.sock.close()


# Shared by the end-to-end modules ------------------------------------------------------
# The daemon under test reads and writes the same test databases, so these tests hold no
# transaction open (the `shared_db` fixture of goproxy_site.tests.fixtures): SQLite
# transactions take the write lock at BEGIN (IMMEDIATE), and a test wrapped in one would
# stall every write of the daemon, and of `committed`, until the busy timeout.
E2E = pytest.mark.usefixtures("shared_db")

LOGINS = [
    "px-alice",
    "px-bob",
    "px-meter-http",
    "px-meter-tunnel",
    "px-meter-tls",
    "px-revoked",
    "px-inactive",
    "px-revoke-later",
    "px-limited",
    "px-restrict",
    "px-cut",
    "px-memory",
    "px-throttle",
    "px-used",
]

LIMITED_PLAN = {"max_connections": 2, "speed_limit_bps": 100_000}


def committed(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an ORM write in its own thread: its own connection, outside the test's
    transaction, so it is committed at once and the proxy subprocess sees it."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if errors:
        raise errors[0]
    return result[0] if result else None


@dataclass(frozen=True)
class ProxyUser:
    user_id: int
    login: str
    secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.login, self.secret)


def open_tunnel(proxy: ProxyProcess, user: ProxyUser, port: int, early: bytes = b"") -> RawClient:
    """A CONNECT tunnel through the daemon to 127.0.0.1:port, `early` sent with its head."""
    c = RawClient(proxy.port)
    c.send(
        f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Proxy-Authorization: {basic(*user.auth)}\r\n\r\n".encode()
        + early
    )
    r = c.response(head_only=True)
    assert r.status == 200
    return c


def proxied_get(proxy: ProxyProcess, user: ProxyUser, url: str, extra: str = "") -> RawClient:
    """A raw connection that has sent one authorised GET."""
    c = RawClient(proxy.port)
    c.send(
        f"GET {url} HTTP/1.1\r\nProxy-Authorization: {basic(*user.auth)}\r\n{extra}\r\n".encode()
    )
    return c


@contextlib.contextmanager
def descriptors_used_up() -> Iterator[list[int]]:
    """RLIMIT_NOFILE lowered to 64 and every descriptor below it taken (the list, which
    the caller may add to); all restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        for _ in range(64):  # bounded: the limit is 64
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield held
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
