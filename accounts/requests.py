"""Request types of views that only signed-in users reach (for the type checker).

LoginRequiredMixin (portal) and IsAuthenticated (API) guarantee that `request.user` is
a User, never AnonymousUser; these subclasses say so, as django-stubs documents.
Nothing constructs them: views annotate `request` with them.
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.request import Request

from .models import User


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class AuthenticatedRequest(Request):
    user: User
