"""Portal URLs, mounted at "/" by goproxy_site.urls.

Not namespaced: Django's auth views reverse their own names ("login",
"password_reset_done", ...) without a namespace, and LOGIN_URL is "login".
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .forms import LoginForm

urlpatterns = [
    path("", views.home_view, name="home"),
    path("signup/", views.signup_view, name="signup"),
    path("dashboard/", views.dashboard_view, name="dashboard"),
    path("credentials/", views.credentials_view, name="credentials"),
    path("credentials/<int:pk>/rotate/", views.credential_rotate_view, name="credential-rotate"),
    path("credentials/<int:pk>/revoke/", views.credential_revoke_view, name="credential-revoke"),
    path("account/delete/", views.account_delete_view, name="account-delete"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=LoginForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    # login, logout, password_change(_done), password_reset(_done|_confirm|_complete)
    path("accounts/", include("django.contrib.auth.urls")),
    path("plans/", include("plans.urls")),
]
