"""Seed the seed system's free plan: "Free", 200,000,000 bytes for 1 day."""

from __future__ import annotations

from decimal import Decimal

from django.db import migrations


def seed_free_plan(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Plan = apps.get_model("plans", "Plan")
    Plan.objects.using(schema_editor.connection.alias).get_or_create(
        name="Free",
        defaults={
            "traffic_limit_bytes": 200_000_000,
            "duration_days": 1,
            "price": Decimal("0"),
            "currency": "USD",
            "is_free": True,
            "is_public": True,
        },
    )


def unseed_free_plan(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Plan = apps.get_model("plans", "Plan")
    Plan.objects.using(schema_editor.connection.alias).filter(
        name="Free", subscriptions__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]

    operations = [migrations.RunPython(seed_free_plan, unseed_free_plan)]
