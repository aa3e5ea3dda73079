"""Data migrations of this change, run on the current models: existing users' addresses
become allauth addresses, existing free-plan claims get the keyed hash of their user's
address."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

from allauth.account.models import EmailAddress
from django.apps import apps
from django.db import connections

from accounts.models import User
from accounts.services import user_create, user_delete_account
from goproxy_site.tests.base import BaseTestCase
from plans.claim_keys import email_claim_hash
from plans.models import FreePlanClaim, Plan

email_addresses = importlib.import_module("accounts.migrations.0003_email_addresses")
claim_hashes = importlib.import_module("plans.migrations.0008_freeplanclaim_email_hash")


class EmailAddressMigrationTests(BaseTestCase):
    def test_users_get_their_address_unverified_and_operators_verified(self) -> None:
        op = user_create(username="op", email="Op@Example.org", is_staff=True)
        EmailAddress.objects.all().delete()
        User.objects.filter(pk=self.charlie.pk).update(email="")
        email_addresses.forwards(apps, SimpleNamespace(connection=connections["default"]))
        rows = {a.user_id: a for a in EmailAddress.objects.all()}
        self.assertEqual(rows[op.pk].email, "op@example.org")
        self.assertIs(rows[op.pk].verified, True)
        self.assertIs(rows[self.alice.pk].verified, False)
        self.assertIs(rows[self.alice.pk].primary, True)
        self.assertNotIn(self.charlie.pk, rows)  # no address, nothing to record
        # Running again changes nothing.
        email_addresses.forwards(apps, SimpleNamespace(connection=connections["default"]))
        self.assertEqual(EmailAddress.objects.count(), len(rows))


class ClaimHashMigrationTests(BaseTestCase):
    def test_claims_get_the_hash_of_their_users_address(self) -> None:
        free = Plan.objects.get(name="Free")
        gone = user_create(username="gone", email="gone@example.org")
        gone_id = gone.pk
        twin = user_create(username="twin", email="A.lice+x@example.org")
        User.objects.filter(pk=self.alice.pk).update(email="alice@gmail.com")
        User.objects.filter(pk=twin.pk).update(email="a.lice@gmail.com")  # the same mailbox
        for user_id in (self.alice.pk, twin.pk, self.bob.pk, gone_id):
            FreePlanClaim.objects.create(user_id=user_id, plan=free)
        user_delete_account(user=gone)
        claim_hashes.backfill(apps, SimpleNamespace(connection=connections["plans"]))
        hashes = dict(FreePlanClaim.objects.values_list("user_id", "email_hash"))
        self.assertEqual(hashes[self.alice.pk], email_claim_hash("alice@gmail.com"))
        self.assertEqual(hashes[self.bob.pk], email_claim_hash("bob@example.org"))
        self.assertIsNone(hashes[twin.pk])  # the older claim has that mailbox
        self.assertIsNone(hashes[gone_id])  # no account, no address left to hash
