"""The single DRF router for /api/v1/ (cookiecutter's config/api_router.py).

`me/` is one object, not a collection, so it is a plain route to MeViewSet; the rest of
`me/...` (credentials, subscription, usage) and every other resource is registered on
the router. Anything else under /api/v1/ gets a JSON 404.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import path, re_path
from rest_framework.routers import DefaultRouter, SimpleRouter

from accounts.api.views import MyCredentialViewSet, UserViewSet, me_view
from goproxy_site.api.exceptions import api_not_found
from plans.api.views import MyPlanViewSet, PlanViewSet, SubscriptionViewSet

router = DefaultRouter() if settings.DEBUG else SimpleRouter()
router.register("users", UserViewSet, basename="user")
router.register("me/credentials", MyCredentialViewSet, basename="me-credential")
router.register("me", MyPlanViewSet, basename="me")
router.register("plans", PlanViewSet, basename="plan")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")

app_name = "api"
urlpatterns = [
    path("me/", me_view, name="me"),
    *router.urls,
    re_path(r"^", api_not_found, name="not-found"),
]
