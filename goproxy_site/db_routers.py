"""Database routing: the `plans` app lives on the plans DB, everything else on `default`.

Follows `AuthRouter` in Django's multi-db documentation. Cross-database relations are
refused: plans rows reference users by `user_id` only.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

ACCOUNTS_DB = "default"
PLANS_DB = "plans"
PLANS_APP_LABELS = frozenset({"plans"})


def _db_for(model: type[Model] | Model) -> str:
    return PLANS_DB if model._meta.app_label in PLANS_APP_LABELS else ACCOUNTS_DB


class PlansRouter:
    """Route the plans app to PLANS_DB and all other apps to ACCOUNTS_DB."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        return _db_for(model)

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return _db_for(model)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return _db_for(obj1) == _db_for(obj2)

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        if app_label in PLANS_APP_LABELS:
            return db == PLANS_DB
        return db == ACCOUNTS_DB
