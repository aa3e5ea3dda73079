"""One free-plan claim per e-mail address (a separate migration: PostgreSQL cannot
alter a table in the transaction that just updated its rows)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("plans", "0008_freeplanclaim_email_hash")]

    operations = [
        migrations.AddConstraint(
            model_name="freeplanclaim",
            constraint=models.UniqueConstraint(
                fields=("email_hash",), name="plans_freeplanclaim_email_hash_unique"
            ),
        ),
    ]
