"""The plan catalogue: creating, changing and deleting plans and their features."""

from __future__ import annotations

from django.db import transaction

from goproxy_site.db_routers import PLANS_DB
from goproxy_site.errors import ConflictError
from plans.models import Feature, Plan

# A feature as the API and admin give it: {"name": ..., "description": ...}.
FeatureData = dict[str, str]


class PlanInUse(ConflictError):
    """The plan has subscriptions or free-plan claims and cannot be deleted."""

    code = "protected"


def _plan_set_features(plan: Plan, features: list[FeatureData]) -> None:
    chosen = []
    for item in features:
        feature, created = Feature.objects.get_or_create(
            name=item["name"], defaults={"description": item.get("description", "")}
        )
        if not created and "description" in item and feature.description != item["description"]:
            feature.description = item["description"]
            feature.full_clean()
            feature.save(update_fields=["description"])
        chosen.append(feature)
    plan.features.set(chosen)


def plan_create(*, data: dict[str, object], features: list[FeatureData] | None = None) -> Plan:
    """Create a plan; features are matched by name (created when new)."""
    plan = Plan(**data)
    plan.full_clean()
    with transaction.atomic(using=PLANS_DB):
        plan.save()
        _plan_set_features(plan, features or [])
    return plan


def plan_update(
    *, plan: Plan, data: dict[str, object], features: list[FeatureData] | None = None
) -> Plan:
    """Change a plan's fields; `features`, when given, replaces the plan's feature list.

    Existing subscriptions keep the limit they were assigned with.
    """
    for name, value in data.items():
        setattr(plan, name, value)
    plan.full_clean()
    with transaction.atomic(using=PLANS_DB):
        plan.save()
        if features is not None:
            _plan_set_features(plan, features)
    return plan


def plan_delete(*, plan: Plan) -> None:
    """Delete a plan nobody ever subscribed to or claimed; others must be hidden instead."""
    with transaction.atomic(using=PLANS_DB):
        if plan.subscriptions.exists() or plan.free_claims.exists():
            raise PlanInUse(
                "This plan has subscriptions; make it non-public instead of deleting it."
            )
        plan.delete()
