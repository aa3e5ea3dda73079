"""No secret ever reaches a log line: proxy requests with credentials (the real daemon at
DEBUG, JSON logs) and credential issue/rotate through the API and the portal (DEBUG,
with SQL logging on)."""

from __future__ import annotations

import base64
import io
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from django.test import TransactionTestCase

from accounts.services import credential_issue, user_create
from goproxy_site.tests.support.proxy import (
    EchoServer,
    OriginServer,
    ProxyProcess,
    RawClient,
    basic,
)


def leaks(text: str, secret: str, login: str) -> list[str]:
    """The forms a secret could take in a log line."""
    forms = [
        secret,
        base64.b64encode(f"{login}:{secret}".encode()).decode(),
        base64.b64encode(secret.encode()).decode().rstrip("="),
    ]
    return [form for form in forms if form in text]


class ProxyLogTests(TransactionTestCase):
    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _dirs(self, tmp_path: Path) -> Iterator[None]:
        self.tmp = tmp_path
        self.origin = OriginServer().start()
        self.echo = EchoServer().start()
        yield
        self.origin.shutdown()
        self.echo.shutdown()

    def test_proxy_requests_with_credentials_log_no_secret(self) -> None:
        user = user_create(username="nosecret", email="nosecret@example.org")
        issued = credential_issue(user=user, login="nosecret-px")
        login, secret = issued.credential.login, issued.secret
        closed = socket.create_server(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        proxy = ProxyProcess(
            self.tmp,
            {
                "LOG_LEVEL": "DEBUG",
                "LOG_FORMAT": "json",
                "PROXY_ALLOWED_CONNECT_PORTS": f"{self.echo.port},{closed_port}",
                "PROXY_UPSTREAM_TIMEOUT": "1",
            },
            "goproxy_site.settings.test",
        ).start()
        try:
            good = basic(login, secret)
            requests = [
                f"GET {self.origin.url('/hello')} HTTP/1.1\r\nProxy-Authorization: {good}\r\n",
                # The secret in the wrong places: a wrong secret, not base64, userinfo.
                f"GET {self.origin.url('/')} HTTP/1.1\r\n"
                f"Proxy-Authorization: {basic(login, secret + 'x')}\r\n",
                f"GET {self.origin.url('/')} HTTP/1.1\r\nProxy-Authorization: Basic {secret}\r\n",
                f"GET http://{login}:{secret}@127.0.0.1:{self.origin.port}/ HTTP/1.1\r\n"
                f"Proxy-Authorization: {good}\r\n",
                # Failures that are logged: upstream refused, upstream too slow, bad framing.
                f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\nProxy-Authorization: {good}\r\n",
                f"GET {self.origin.url('/slow?s=3')} HTTP/1.1\r\nProxy-Authorization: {good}\r\n",
                f"POST {self.origin.url('/echo')} HTTP/1.1\r\nProxy-Authorization: {good}\r\n"
                "Content-Length: nope\r\n",
            ]
            statuses = []
            for head in requests:
                client = RawClient(proxy.port)
                client.send((head + "Connection: close\r\n\r\n").encode())
                statuses.append(client.response().status)
                client.close()
            assert statuses[0] == 200 and statuses[1:3] == [407, 407], statuses
            assert 502 in statuses and 504 in statuses and 400 in statuses, statuses
        finally:
            assert proxy.stop() == 0
        assert "listening on" in proxy.log()
        assert leaks(proxy.log(), secret, login) == [], proxy.log()

        # The credential store failing mid-login is logged with its traceback (ERROR, JSON).
        broken = ProxyProcess(
            self.tmp / "broken",
            {
                "LOG_LEVEL": "DEBUG",
                "LOG_FORMAT": "json",
                "ACCOUNTS_DATABASE_URL": f"sqlite:///{self.tmp}/missing-dir/accounts.sqlite3",
            },
            "goproxy_site.settings.test",
        )
        (self.tmp / "broken").mkdir()
        broken.start()
        try:
            client = RawClient(broken.port)
            client.send(
                f"GET {self.origin.url('/')} HTTP/1.1\r\nProxy-Authorization: {good}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            assert client.response().status == 503
            client.close()
        finally:
            assert broken.stop() == 0
        log = broken.log()
        assert '"level": "ERROR"' in log and "credential lookup failed" in log, log
        assert "Traceback" in log or '"exc"' in log, log
        assert leaks(log, secret, login) == [], log


class WebLogTests(TransactionTestCase):
    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _capture(self) -> Iterator[None]:
        """Route the configured console handler (with its filters) into a buffer at DEBUG."""
        root = logging.getLogger()
        handler = next(h for h in root.handlers if h.get_name() == "console")
        assert isinstance(handler, logging.StreamHandler)
        self.buffer = io.StringIO()
        old_stream = handler.setStream(self.buffer)
        old_level = root.level
        root.setLevel(logging.DEBUG)
        sql = logging.getLogger("django.db.backends")  # under "django", which is at INFO
        sql.setLevel(logging.DEBUG)
        for alias in ("default", "plans"):
            connections[alias].force_debug_cursor = True  # SQL with parameters at DEBUG
        try:
            yield
        finally:
            for alias in ("default", "plans"):
                connections[alias].force_debug_cursor = False
            root.setLevel(old_level)
            sql.setLevel(logging.NOTSET)
            handler.setStream(old_stream)

    def test_api_and_portal_credential_issue_log_no_secret(self) -> None:
        user = user_create(
            username="webnosecret", email="webnosecret@example.org", email_verified=True
        )
        user.set_password("pw-web-no-secret-1")
        user.save()
        self.client.force_login(user)
        api = self.client.post("/api/v1/me/credentials/", {"login": "web-api-px"})
        assert api.status_code == 201, api.content
        rotated = self.client.post(f"/api/v1/me/credentials/{api.json()['id']}/rotate/")
        assert rotated.status_code == 200, rotated.content
        # The portal holds the new secret in the session (sealed) until its page shows it.
        portal = self.client.post("/credentials/", {"login": "web-portal-px"}, follow=True)
        assert portal.status_code == 200, portal.content
        refused = self.client.post("/api/v1/me/credentials/", {"login": "bad login!"})
        assert refused.status_code == 400
        issued = [
            ("web-api-px", api.json()["secret"]),
            ("web-api-px", rotated.json()["secret"]),
            ("web-portal-px", portal.context["secret"]),
        ]
        logged = self.buffer.getvalue()
        assert "INSERT INTO" in logged and "web-portal-px" in logged  # the capture works
        for login, secret in issued:
            assert len(secret) >= 20
            assert leaks(logged, secret, login) == [], logged
