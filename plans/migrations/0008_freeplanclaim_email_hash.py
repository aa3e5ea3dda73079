"""Free-plan claims keyed by the person's e-mail address as well as by account.

Existing claims get the hash of their user's current address. The plans DB holds no
addresses, so the backfill reads users from the accounts DB (alias "default") through
the ORM: `make migrate`, the compose `migrate` job and the test runner all migrate the
accounts DB first. The oldest claim wins when two accounts' addresses are one mailbox
(e.g. j.doe@gmail.com and jdoe@gmail.com); claims whose account is gone keep no hash.
"""

from django.db import DatabaseError, migrations, models

from goproxy_site.db_routers import ACCOUNTS_DB
from plans.claim_keys import email_claim_hash


def backfill(apps, schema_editor):
    db = schema_editor.connection.alias
    FreePlanClaim = apps.get_model("plans", "FreePlanClaim")
    claims = list(
        FreePlanClaim.objects.using(db).filter(email_hash=None).order_by("claimed_at", "pk")
    )
    if not claims:
        return
    User = apps.get_model("accounts", "User")
    try:
        emails = dict(
            User.objects.using(ACCOUNTS_DB)
            .filter(pk__in=[c.user_id for c in claims])
            .exclude(email="")
            .values_list("pk", "email")
        )
    except DatabaseError as exc:
        raise RuntimeError(
            "Free-plan claims need their users' e-mail addresses: migrate the accounts "
            f"database (`manage.py migrate`) before the plans database ({exc})."
        ) from exc
    seen = set(
        FreePlanClaim.objects.using(db)
        .exclude(email_hash=None)
        .values_list("email_hash", flat=True)
    )
    for claim in claims:
        email = emails.get(claim.user_id)
        if not email:
            continue
        digest = email_claim_hash(email)
        if digest in seen:
            continue
        seen.add(digest)
        FreePlanClaim.objects.using(db).filter(pk=claim.pk).update(email_hash=digest)


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0007_expiry_reminders_in_hours"),
        ("accounts", "0002_pipeline"),
    ]

    operations = [
        migrations.AddField(
            model_name="freeplanclaim",
            name="email_hash",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
