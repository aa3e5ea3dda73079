"""Record every existing user's e-mail as their allauth address.

Operators' (staff) addresses count as verified: operators are known to whoever runs the
site, and the admin needs no extra step. Everyone else's start unverified: they signed
up when nothing was checked, so an address may be made up. Nothing they already have
stops (plans keep running, issued credentials keep working); claiming the free plan,
buying and issuing new credentials wait for the link the dashboard offers to send, and
operators can mark addresses verified in the admin.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    db = schema_editor.connection.alias
    User = apps.get_model("accounts", "User")
    EmailAddress = apps.get_model("account", "EmailAddress")
    have = set(EmailAddress.objects.using(db).values_list("user_id", flat=True))
    taken = set(EmailAddress.objects.using(db).values_list("email", flat=True))
    rows = []
    for user in User.objects.using(db).exclude(email="").order_by("pk").iterator():
        email = user.email.lower()
        if user.pk in have or email in taken:
            continue
        taken.add(email)
        rows.append(
            EmailAddress(user_id=user.pk, email=email, primary=True, verified=user.is_staff)
        )
    EmailAddress.objects.using(db).bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_pipeline"),
        ("account", "0009_emailaddress_unique_primary_email"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
