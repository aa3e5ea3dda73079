"""Proxy failures as exceptions that render their own HTTP response.

Each class carries its status, a short plain-text body naming the problem, and whether
the client connection can stay open afterwards (never after a framing error).
"""

from __future__ import annotations

from http import HTTPStatus


class ProxyError(Exception):
    status: int = 500
    keep_alive: bool = False

    def __init__(self, message: str, *, keep_alive: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if keep_alive is not None:
            self.keep_alive = keep_alive

    def extra_headers(self) -> list[tuple[str, str]]:
        return []

    def response(self, *, keep_alive: bool = False) -> bytes:
        reason = HTTPStatus(self.status).phrase
        body = (self.message.replace("\r", " ").replace("\n", " ") + "\n").encode()
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        lines += [f"{name}: {value}" for name, value in self.extra_headers()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class BadRequest(ProxyError):
    status = 400


class Forbidden(ProxyError):
    """Destination or user refused; the message says why."""

    status = 403
    keep_alive = True


class ProxyAuthRequired(ProxyError):
    status = 407
    keep_alive = True

    def extra_headers(self) -> list[tuple[str, str]]:
        return [("Proxy-Authenticate", 'Basic realm="goproxy"')]


class RequestTimeout(ProxyError):
    status = 408


class HeadersTooLarge(ProxyError):
    status = 431


class TooManyRequests(ProxyError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def extra_headers(self) -> list[tuple[str, str]]:
        return [("Retry-After", str(self.retry_after))]


class InternalError(ProxyError):
    status = 500


class NotImplementedByProxy(ProxyError):
    status = 501


class BadGateway(ProxyError):
    status = 502
    keep_alive = True


class ServiceUnavailable(ProxyError):
    status = 503


class OutOfDescriptors(ServiceUnavailable):
    """The process is at RLIMIT_NOFILE: no socket can be opened right now."""

    keep_alive = True


class GatewayTimeout(ProxyError):
    status = 504
    keep_alive = True


class VersionNotSupported(ProxyError):
    status = 505


class ClientGone(Exception):
    """The client closed or reset the connection; nothing can be answered."""
