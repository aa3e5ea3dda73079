"""The transactional outbox: rows per app database, and the relay that sends them."""

from __future__ import annotations

from django.db import router, transaction

from accounts.models import OutboxEvent as AccountsOutbox
from accounts.services import credential_revoke
from goproxy_site.db_routers import ACCOUNTS_DB, PLANS_DB
from goproxy_site.events import schemas
from goproxy_site.events.memory import InMemoryEventBus
from goproxy_site.outbox import (
    OutboxRelay,
    outbox_add,
    outbox_mark_sent,
    outbox_models,
    outbox_pending,
)
from goproxy_site.tests.base import BaseTestCase
from plans.models import OutboxEvent as PlansOutbox

CONTROL = "goproxy.control"


class OutboxTests(BaseTestCase):
    def test_each_app_has_its_outbox_on_its_own_database(self) -> None:
        found = {model: router.db_for_write(model) for model in outbox_models()}
        self.assertEqual(found, {AccountsOutbox: ACCOUNTS_DB, PlansOutbox: PLANS_DB})

    def test_rows_are_pending_until_marked_sent(self) -> None:
        event = schemas.UserDeactivated(user_id=self.charlie.pk)
        with transaction.atomic(using=ACCOUNTS_DB):
            row = outbox_add(model=AccountsOutbox, event=event)
        self.assertEqual((row.topic, row.key), (schemas.topic_for(event), str(self.charlie.pk)))
        self.assertEqual(schemas.from_json(row.payload), event)
        self.assertIn(row, outbox_pending(model=AccountsOutbox, limit=1000))
        self.assertEqual(outbox_mark_sent(model=AccountsOutbox, ids=[row.pk]), 1)
        self.assertEqual(outbox_mark_sent(model=AccountsOutbox, ids=[row.pk]), 0)
        self.assertNotIn(row, outbox_pending(model=AccountsOutbox, limit=1000))


class OutboxRelayTests(BaseTestCase):
    def setUp(self) -> None:
        self.bus = InMemoryEventBus()
        self.producer = self.bus.producer()

    def test_relay_waits_for_the_broker_and_loses_nothing(self) -> None:
        credential_revoke(credential=self.alice_cred.credential)
        relay = OutboxRelay(self.producer)
        self.bus.down = True
        with self.assertLogs("goproxy_site.outbox", "WARNING"):
            self.assertEqual(relay.step(force=True), 0)
        # Only this user's rows: session fixtures elsewhere may have committed others.
        pending = AccountsOutbox.objects.filter(sent_at__isnull=True, key=str(self.alice.pk))
        self.assertEqual(pending.count(), 1)
        self.bus.down = False
        relay.step(force=True)
        self.assertFalse(pending.exists())
        revoked = [
            e
            for e in self.bus.events(CONTROL)
            if isinstance(e, schemas.ProxyCredentialRevoked) and e.user_id == self.alice.pk
        ]
        self.assertEqual([e.login for e in revoked], ["alice-proxy"])
