"""OpenAPI generation: every operation also documents the error responses it can give.

The bodies are the ones `goproxy_site.api.exceptions` renders: `{"detail": "..."}` for
401/403/404/405/415/429 and conflicts on a resource, and a field → messages object for
400 and duplicate-value 409s.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ValidationErrorSerializer(serializers.Serializer):
    """Field name (or `non_field_errors`) → list of messages; nested for nested input."""

    # Open-ended: the keys are the request's own field names.
    non_field_errors = serializers.ListField(child=serializers.CharField(), required=False)


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the project's error responses."""

    def _error(
        self, serializer: type[serializers.Serializer], code: str, description: str
    ) -> dict[str, Any]:
        response = self._get_response_for_code(
            OpenApiResponse(response=serializer, description=description), code
        )
        return response

    def _get_response_bodies(self, direction: Direction = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        errors: dict[str, tuple[type[serializers.Serializer], str]] = {
            "401": (ErrorSerializer, "Missing or invalid credentials."),
            "403": (ErrorSerializer, "Not allowed (or CSRF token missing for session auth)."),
            "429": (ErrorSerializer, "Too many requests; see the Retry-After header."),
        }
        has_params = "{" in self.path
        if self.method in BODY_METHODS or self.get_override_parameters() or self._is_list_view():
            errors["400"] = (ValidationErrorSerializer, "Invalid input, by field.")
        if self.method in BODY_METHODS:
            errors["415"] = (ErrorSerializer, "Unsupported request media type.")
        if self.method in BODY_METHODS or self.method == "DELETE":
            errors["409"] = (
                ValidationErrorSerializer,
                "Conflicts with existing data (duplicate value, resource in use).",
            )
        if has_params:
            errors["404"] = (ErrorSerializer, "No such object, or not yours.")
        elif self._is_list_view():
            errors["404"] = (ErrorSerializer, "No such page.")
        for code, (serializer, description) in errors.items():
            responses.setdefault(code, self._error(serializer, code, description))
        return responses
