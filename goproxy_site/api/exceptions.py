"""API error rendering: every error is a JSON body with a clear status.

Services raise Django's ValidationError; here it becomes a 400 with field messages
(`non_field_errors` for the rest). Errors that only say "this already exists" (codes in
CONFLICT_CODES) become 409, as do services' ConflictErrors (a second free-plan claim,
deleting a plan in use) and an integrity error that slipped past validation (a race
between two requests). A Django PermissionDenied with a message (a guard's) is a 403
with that message.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    NON_FIELD_ERRORS,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from goproxy_site.errors import ConflictError

logger = logging.getLogger(__name__)

# Validation codes meaning "conflicts with existing data" rather than "malformed".
CONFLICT_CODES = frozenset({"unique", "duplicate", "already_claimed", "has_plan", "protected"})


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with existing data."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def _details(errors: list[DjangoValidationError]) -> list[ErrorDetail]:
    return [
        ErrorDetail(message, code=error.code or "invalid")
        for error in errors
        for message in error.messages
    ]


def django_to_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A Django ValidationError as DRF's, keeping fields, messages and codes."""
    if hasattr(exc, "error_dict"):
        detail: dict[str, Any] = {}
        for field, errors in exc.error_dict.items():
            key = api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field
            detail[key] = _details(errors)
        return exceptions.ValidationError(detail)
    return exceptions.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: _details(exc.error_list)})


def _leaf_codes(codes: Any) -> list[str]:
    if isinstance(codes, dict):
        return [c for value in codes.values() for c in _leaf_codes(value)]
    if isinstance(codes, list):
        return [c for value in codes for c in _leaf_codes(value)]
    return [codes]


def is_conflict(exc: exceptions.ValidationError) -> bool:
    codes = _leaf_codes(exc.get_codes())
    return bool(codes) and all(code in CONFLICT_CODES for code in codes)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: map service errors, then DRF's own handling."""
    if isinstance(exc, DjangoValidationError):
        exc = django_to_drf(exc)
    elif isinstance(exc, ConflictError):
        exc = Conflict(str(exc), code=exc.code)
    elif isinstance(exc, IntegrityError):
        # Validation runs first, so this is two requests racing for the same unique value.
        logger.warning("API integrity error turned into 409: %s", exc)
        exc = Conflict()
    elif isinstance(exc, PermissionDenied) and str(exc):
        # A guard's refusal says why (e.g. "verify your e-mail address first"); DRF's own
        # mapping would replace it with a generic sentence.
        exc = exceptions.PermissionDenied(str(exc), code=getattr(exc, "code", None))
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        logger.warning("API request refused: %s", exc)
        exc = exceptions.ParseError(str(exc) or "Malformed request.")
    elif isinstance(exc, DataError):
        logger.warning("API data error turned into 400: %s", exc)
        exc = exceptions.ValidationError("A value is out of range for the database.")
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError) and is_conflict(exc):
        response.status_code = status.HTTP_409_CONFLICT
    return response


@csrf_exempt  # it changes nothing, and a CSRF page would hide the real answer (404)
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """JSON 404 for any /api/v1/ path no endpoint matches (instead of Django's HTML page)."""
    hint = ""
    if not request.path.endswith("/"):
        hint = f" API paths end with a slash: try {request.path}/"
    return JsonResponse({"detail": f"Not found.{hint}"}, status=status.HTTP_404_NOT_FOUND)
