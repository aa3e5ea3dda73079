"""App configs of the project package: its system checks, and the operators' admin site."""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps

from . import checks  # noqa: F401  (registers the system checks)


class GoproxySiteConfig(AppConfig):
    name = "goproxy_site"
    verbose_name = "goproxy"


class GoproxyAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with OperatorAdminSite as `admin.site` (see INSTALLED_APPS)."""

    # Not the default config of this module: "goproxy_site" stays GoproxySiteConfig.
    default = False
    default_site = "goproxy_site.admin_site.OperatorAdminSite"
