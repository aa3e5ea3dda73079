"""Start-up configuration checks (`manage.py check`), like healthchecks' `hc.api` checks."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from .db_routers import ACCOUNTS_DB, PLANS_DB

ROUTER_PATH = "goproxy_site.db_routers.PlansRouter"


@register()
def check_databases(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    for alias in (ACCOUNTS_DB, PLANS_DB):
        if alias not in settings.DATABASES:
            errors.append(
                Error(
                    f"DATABASES has no {alias!r} alias.",
                    hint="Set ACCOUNTS_DATABASE_URL and PLANS_DATABASE_URL.",
                    id="goproxy.E001",
                )
            )
    if ROUTER_PATH not in settings.DATABASE_ROUTERS:
        errors.append(
            Error(
                f"{ROUTER_PATH} is not in DATABASE_ROUTERS.",
                hint="Without it the plans tables land in the accounts DB.",
                id="goproxy.E002",
            )
        )
    return errors
