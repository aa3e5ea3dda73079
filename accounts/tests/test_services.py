from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import connections

from accounts.models import OutboxEvent as AccountsOutbox
from accounts.models import ProxyCredential, User
from accounts.selectors import credential_authenticate
from accounts.services import (
    credential_issue,
    credential_revoke,
    credential_revoke_all,
    credential_rotate,
    user_create,
    user_deactivate,
)
from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans.models import SubscriptionStatus
from plans.selectors import subscription_get_current
from plans.tests.factories import outbox_events, restriction_events


class UserCreateTests(BaseTestCase):
    def test_email_is_unique_case_insensitively(self) -> None:
        with self.assertRaises(ValidationError) as ctx:
            user_create(username="alice2", email="ALICE@Example.org", password="pw-x-123")
        self.assertIn("email", ctx.exception.message_dict)

    def test_it_validates_the_username(self) -> None:
        with self.assertRaises(ValidationError):
            user_create(username="bad name!", email="x@example.org")

    def test_it_hashes_the_password(self) -> None:
        user = user_create(username="dora", email="dora@example.org", password="pw-dora-9")
        self.assertNotIn("pw-dora-9", user.password)
        self.assertIs(user.check_password("pw-dora-9"), True)


class CredentialTests(BaseTestCase):
    def test_issue_returns_a_long_secret_that_authenticates(self) -> None:
        issued = credential_issue(user=self.charlie)
        self.assertGreaterEqual(len(issued.secret), 32)
        self.assertRegex(issued.credential.login, r"^[a-z0-9._-]{3,64}$")
        found = credential_authenticate(login=issued.credential.login, secret=issued.secret)
        assert found is not None
        self.assertEqual(found, issued.credential)
        self.assertEqual(found.user, self.charlie)

    def test_secret_is_nowhere_in_the_database_in_clear(self) -> None:
        issued = credential_issue(user=self.charlie, login="charlie-x")
        for alias in ("default", "plans"):
            connection = connections[alias]
            with connection.cursor() as cursor:
                for table in connection.introspection.table_names(cursor):
                    quoted = connection.ops.quote_name(table)
                    cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608
                    for row in cursor.fetchall():
                        self.assertNotIn(issued.secret, repr(row), f"{alias}.{table}")

    def test_wrong_secret_unknown_login_and_revoked_never_authenticate(self) -> None:
        issued = credential_issue(user=self.charlie, login="charlie-y")
        self.assertIsNone(credential_authenticate(login="charlie-y", secret=issued.secret + "x"))
        self.assertIsNone(credential_authenticate(login="nobody", secret=issued.secret))
        credential_revoke(credential=issued.credential)
        self.assertIsNone(credential_authenticate(login="charlie-y", secret=issued.secret))

    def test_inactive_user_never_authenticates(self) -> None:
        issued = credential_issue(user=self.charlie, login="charlie-z")
        User.objects.filter(pk=self.charlie.pk).update(is_active=False)
        self.assertIsNone(credential_authenticate(login="charlie-z", secret=issued.secret))

    def test_rotate_invalidates_the_old_secret(self) -> None:
        rotated = credential_rotate(credential=self.alice_cred.credential)
        self.assertNotEqual(rotated.secret, self.alice_cred.secret)
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        self.assertIsNotNone(credential_authenticate(login="alice-proxy", secret=rotated.secret))

    def test_login_rules(self) -> None:
        for bad in ["ab", "Alice", "a:b", "a b", "x" * 65, "émile"]:
            with self.subTest(login=bad), self.assertRaises(ValidationError):
                credential_issue(user=self.charlie, login=bad)

    def test_duplicate_login_is_refused(self) -> None:
        with self.assertRaises(ValidationError) as ctx:
            credential_issue(user=self.charlie, login="alice-proxy")
        self.assertIn("login", ctx.exception.message_dict)

    def test_a_user_may_hold_several_and_revoke_all(self) -> None:
        credential_issue(user=self.charlie)
        credential_issue(user=self.charlie)
        self.assertEqual(credential_revoke_all(user=self.charlie), 2)
        self.assertEqual(
            ProxyCredential.objects.filter(user=self.charlie, revoked_at=None).count(), 0
        )

    def test_rotate_refuses_revoked(self) -> None:
        credential_revoke(credential=self.alice_cred.credential)
        with self.assertRaises(ValidationError):
            credential_rotate(credential=self.alice_cred.credential)


class UserDeactivateTests(BaseTestCase):
    def test_it_revokes_credentials_and_disables_the_subscription(self) -> None:
        user_deactivate(user=self.alice)
        self.alice.refresh_from_db()
        self.assertIs(self.alice.is_active, False)
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        sub = subscription_get_current(user_id=self.alice.pk)
        assert sub is not None
        self.assertEqual(sub.status, SubscriptionStatus.DISABLED)


class AccountsOutboxTests(BaseTestCase):
    def test_revoke_rotate_and_deactivate_write_accounts_outbox(self) -> None:
        credential_rotate(credential=self.alice_cred.credential)
        credential_revoke(credential=self.alice_cred.credential)
        credential_revoke(credential=self.alice_cred.credential)  # idempotent: no event
        user_deactivate(user=self.alice)
        events = outbox_events(AccountsOutbox)
        self.assertEqual(
            [type(e).__name__ for e in events],
            ["ProxyCredentialRevoked", "ProxyCredentialRevoked", "UserDeactivated"],
        )
        assert isinstance(events[0], schemas.ProxyCredentialRevoked)
        self.assertEqual(events[0].login, "alice-proxy")
        self.assertEqual({e.key for e in events}, {str(self.alice.pk)})
        # Deactivation disables the subscription, which restricts on the plans DB.
        self.assertEqual(restriction_events()[-1].reason, schemas.REASON_DISABLED)
