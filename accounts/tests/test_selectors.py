"""Reads on the accounts DB that plans-side pages use to name people."""

from __future__ import annotations

from django.test import TestCase

from accounts.selectors import UserSummary, user_ids_matching, users_by_id
from accounts.services import user_create


class UsersByIdTests(TestCase):
    def test_many_users_in_one_query_missing_ids_absent(self) -> None:
        alice = user_create(username="alice", email="alice@example.org")
        bob = user_create(username="bob", email="bob@example.org")
        with self.assertNumQueries(1):
            found = users_by_id(user_ids=[alice.pk, bob.pk, 999_999, alice.pk])
        self.assertEqual(
            found,
            {
                alice.pk: UserSummary(alice.pk, "alice", "alice@example.org", True),
                bob.pk: UserSummary(bob.pk, "bob", "bob@example.org", True),
            },
        )
        self.assertEqual(found[alice.pk].label, "alice@example.org")
        self.assertEqual(UserSummary(1, "carol", "", False).label, "carol")  # no e-mail

    def test_no_ids_no_query(self) -> None:
        with self.assertNumQueries(0):
            self.assertEqual(users_by_id(user_ids=[]), {})


class UserIdsMatchingTests(TestCase):
    def test_username_or_email_contains_the_term_ignoring_case(self) -> None:
        alice = user_create(username="alice", email="alice@example.org")
        bob = user_create(username="bob", email="robert@corp.example")
        self.assertEqual(user_ids_matching(term="ALICE"), [alice.pk])
        self.assertEqual(user_ids_matching(term="corp."), [bob.pk])
        self.assertEqual(user_ids_matching(term="example"), [alice.pk, bob.pk])
        self.assertEqual(user_ids_matching(term="  "), [])

    def test_at_most_limit_plus_one(self) -> None:
        for n in range(5):
            user_create(username=f"u{n}", email=f"u{n}@example.org")
        self.assertEqual(len(user_ids_matching(term="example", limit=2)), 3)
