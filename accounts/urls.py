"""Portal URLs, mounted at "/" by goproxy_site.urls.

Not namespaced: allauth's views reverse their own names ("account_login",
"account_reset_password_done", ...) without a namespace, and LOGIN_URL is
"account_login". `accounts/` is allauth: signup, login, logout, e-mail verification and
management, password change and reset, Google sign-in (`accounts/google/...`) and
two-factor authentication (`accounts/2fa/...`).
"""

from __future__ import annotations

from django.urls import include, path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", views.home_view, name="home"),
    # The portal's signup page before allauth; kept so old links land on the new one.
    path("signup/", RedirectView.as_view(pattern_name="account_signup"), name="signup"),
    path("dashboard/", views.dashboard_view, name="dashboard"),
    path("credentials/", views.credentials_view, name="credentials"),
    path(
        "credentials/issued/<str:token>/",
        views.credential_issued_view,
        name="credential-issued",
    ),
    path("credentials/<int:pk>/rotate/", views.credential_rotate_view, name="credential-rotate"),
    path("credentials/<int:pk>/revoke/", views.credential_revoke_view, name="credential-revoke"),
    path("account/delete/", views.account_delete_view, name="account-delete"),
    path(
        "accounts/email/resend/",
        views.email_verification_resend_view,
        name="email-verification-resend",
    ),
    # allauth's login, answering 429 when the failed-attempts limit refuses a login.
    path("accounts/login/", views.login_view, name="account_login"),
    path("accounts/", include("allauth.urls")),
    path("plans/", include("plans.urls")),
]
