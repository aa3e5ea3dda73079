"""Object-level rules of the accounts API (DRF's IsOwnerOrReadOnly shape)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


class IsNotSelf(BasePermission):
    """Operators may not deactivate their own account through the API (locks them out)."""

    message = "You cannot deactivate your own account."

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        # Only deletion is refused; reading and editing oneself is fine.
        if request.method != "DELETE":
            return True
        # Deleting another user is allowed (IsAdminUser already checked staff).
        return obj.pk != request.user.pk
