"""Structured logging: one JSON object per line, a request id on every record, no secrets.

`LOG_FORMAT=json` (default in prod) or `plain` (development). The request id comes from
the `X-Request-ID` header when a load balancer sets one, else a fresh UUID; it is echoed
in the response and attached to every log record written while the request runs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Secrets that must never reach a log line, whatever code logs them: Basic/Bearer/Token
# authorisation values, user:password@ in URLs, and password/secret/token fields.
_REDACTIONS = [
    (re.compile(r"(?i)\b(basic|bearer|token)\s+[A-Za-z0-9+/=._~-]{6,}"), r"\1 [redacted]"),
    (re.compile(r"(?i)(\w+://[^:/@\s]+):[^@\s]+@"), r"\1:[redacted]@"),
    (
        re.compile(r"""(?i)(["']?(?:password|secret|token)["']?\s*[:=]\s*["']?)[^"',\s}]+"""),
        r"\1[redacted]",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Attach the current request id and redact secrets from the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        for key in ("user_id", "client", "status", "event"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, default=str)


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response
