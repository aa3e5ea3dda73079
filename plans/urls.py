"""Portal URLs for plans, mounted at /plans/ by accounts.urls."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "plans"

urlpatterns = [
    path("", views.catalogue_view, name="catalogue"),
    path("<int:pk>/claim/", views.claim_free_plan_view, name="claim-free"),
    path("<int:pk>/queue/", views.queue_plan_view, name="queue"),
    path("queue/cancel/", views.queue_cancel_view, name="queue-cancel"),
    path(
        "subscription-url/rotate/",
        views.subscription_url_rotate_view,
        name="subscription-url-rotate",
    ),
    path("sub/<str:token>/", views.subscription_url_view, name="subscription-url"),
]
