"""The single DRF router for /api/v1/ (cookiecutter's config/api_router.py)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.routers import DefaultRouter, SimpleRouter

router = DefaultRouter() if settings.DEBUG else SimpleRouter()

app_name = "api"
urlpatterns = router.urls
