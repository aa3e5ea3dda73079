"""Object-level rules shared by every app's API (DRF's IsOwnerOrReadOnly shape)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


class IsOwner(BasePermission):
    """Only the user an object belongs to may see or change it, staff included.

    `me/` endpoints already scope their querysets to the requester; this is the second
    line, so a queryset mistake cannot expose another user's credential.
    """

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        # Objects carry their owner as `user_id` (credentials, subscriptions).
        owner_id = getattr(obj, "user_id", None)
        # Anything without an owner is not a "me" object: refuse rather than guess.
        return owner_id is not None and owner_id == request.user.pk
