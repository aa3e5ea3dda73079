"""store: the proxy's reads of the accounts and plans databases, and the DB thread pool."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError

from accounts.models import ProxyCredential
from accounts.services import credential_issue
from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import Plan
from proxy_daemon import store
from proxy_daemon.auth import Principal
from proxy_daemon.limits import UNLIMITED, UserLimits


class PlanLimitsTests(BaseTestCase):
    def test_all_limits_of_the_current_plan_come_from_one_query(self) -> None:
        plan = Plan.objects.create(
            name="Small",
            traffic_limit_bytes=10**9,
            max_connections=3,
            speed_limit_bps=80_000,
            device_limit=2,
        )
        services.plan_assign(user_id=self.charlie.pk, plan=plan)
        with self.assertNumQueries(1, using="plans"):
            limits = store.plan_limits(self.charlie.pk)
        self.assertEqual(limits, UserLimits(max_connections=3, speed_bps=80_000, device_limit=2))

    def test_without_a_plan_nothing_is_limited(self) -> None:
        self.assertEqual(store.plan_limits(self.charlie.pk), UNLIMITED)


class CredentialLookupTests(BaseTestCase):
    def setUp(self) -> None:
        self.issued = credential_issue(user=self.charlie, login="charlie-proxy")

    def test_a_valid_secret_gives_the_principal_and_records_the_use(self) -> None:
        credential = self.issued.credential
        principal = store.credential_lookup("charlie-proxy", self.issued.secret)
        self.assertEqual(
            principal,
            Principal(user_id=self.charlie.pk, login="charlie-proxy", credential_id=credential.pk),
        )
        used = ProxyCredential.objects.get(pk=credential.pk).last_used_at
        self.assertIsNotNone(used)

    def test_a_wrong_secret_or_login_gives_none(self) -> None:
        self.assertIsNone(store.credential_lookup("charlie-proxy", "not-the-secret"))
        self.assertIsNone(store.credential_lookup("nobody", self.issued.secret))


class RestrictionSnapshotTests(BaseTestCase):
    def test_states_and_throttles_of_every_user(self) -> None:
        services.traffic_apply_batch(
            deltas=[
                schemas.UserConsumedTrafficEvent(
                    user_id=self.charlie.pk, bytes_up=1, bytes_down=1, instance_id="px", seq=1
                )
            ]
        )
        snapshot = store.restriction_snapshot()
        reason, version = snapshot.states[self.charlie.pk]
        self.assertEqual(reason, schemas.REASON_NO_PLAN)
        self.assertGreaterEqual(version, 1)
        self.assertEqual(snapshot.throttles, {})

    def test_a_failing_database_is_retried_then_named(self) -> None:
        failures = [DatabaseError("database is locked")]

        def flaky() -> dict[int, tuple[str, int]]:
            if failures:
                raise failures.pop()
            return {}

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store, "restriction_states", flaky)
            self.assertEqual(store.restriction_snapshot(attempts=2).states, {})  # retried
            failures.append(DatabaseError("database is locked"))
            with self.assertRaisesMessage(
                RuntimeError, "cannot load restrictions from the plans DB: database is locked"
            ):
                store.restriction_snapshot(attempts=1)


class DBRunnerTests:
    def test_calls_run_on_pool_threads_and_return_or_raise_there(self) -> None:
        db = store.DBRunner(2)
        try:
            assert db(threading.get_ident) != threading.get_ident()
            assert db(divmod, 7, 2) == (3, 1)
            with pytest.raises(ZeroDivisionError):
                db(lambda: 1 / 0)
        finally:
            db.close()
