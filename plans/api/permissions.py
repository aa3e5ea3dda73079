"""Permission rules for the plans API."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


class IsStaffOrReadOnly(BasePermission):
    """Anyone may read the catalogue; only staff may change it.

    Which plans a reader sees (public only, or all for staff) is the view's queryset.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        # Reads are public: the catalogue is what anonymous visitors shop from.
        if request.method in SAFE_METHODS:
            return True
        # Writes need an authenticated staff member.
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
