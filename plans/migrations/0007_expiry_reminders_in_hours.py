# Expiry reminders count hours before the end (a 1-day plan is reminded hours before it
# ends): thresholds recorded in days become hours.

from django.db import migrations, models
from django.db.models import F


def days_to_hours(apps, schema_editor):
    Notification = apps.get_model("plans", "Notification")
    Notification.objects.using(schema_editor.connection.alias).filter(kind="expiry").update(
        threshold=F("threshold") * 24
    )


def hours_to_days(apps, schema_editor):
    Notification = apps.get_model("plans", "Notification")
    rows = Notification.objects.using(schema_editor.connection.alias).filter(kind="expiry")
    # Reminders of a few hours have no day equivalent (and could clash with a 1-day one).
    rows.filter(threshold__lt=24).delete()
    rows.update(threshold=F("threshold") / 24)


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0006_quota_grants"),
    ]

    operations = [
        migrations.AlterField(
            model_name="notification",
            name="kind",
            field=models.CharField(
                choices=[("quota", "Quota threshold"), ("expiry", "Before expiry")], max_length=10
            ),
        ),
        migrations.AlterField(
            model_name="notification",
            name="threshold",
            field=models.PositiveIntegerField(
                help_text="Percent of the quota, or hours before expiry."
            ),
        ),
        migrations.RunPython(days_to_hours, hours_to_days),
    ]
