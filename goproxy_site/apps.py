from __future__ import annotations

from django.apps import AppConfig


class GoproxySiteConfig(AppConfig):
    name = "goproxy_site"
    verbose_name = "goproxy"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
