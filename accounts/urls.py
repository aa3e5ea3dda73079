"""Portal URLs (signup, login, dashboard, credentials)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

app_name = "accounts"


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("goproxy: see /admin/", content_type="text/plain")


urlpatterns = [path("", home, name="home")]
