"""End-to-end: the real proxy daemon, tansu, a Celery worker with the plan-controller
bootstep, and both databases.

Every byte the client moved through the proxy (request and response wire bytes) must
end up in the plans DB exactly once; restrictions must cut and lift within 2 s.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import connections
from django.test import TransactionTestCase

from goproxy_site.tests.support.forwarder import PortForwarder
from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import db_url
from goproxy_site.tests.support.stack import Stack, TrafficLoad, assert_exact, kafka_proxy
from goproxy_site.tests.support.traffic import WAIT, Response, UserTraffic
from plans.models import Plan, Subscription, SubscriptionStatus
from plans.services import plan_assign


# -- origin and client -------------------------------------------------------------------
# -- processes ---------------------------------------------------------------------------
class PipelineEndToEndTests(TransactionTestCase):
    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _stack(self, stack: Stack) -> None:
        self.stack = stack

    def test_limit_cut_no_plan_refusal_and_reassignment(self) -> None:
        stack = self.stack
        limit = 2_000_000
        plan = Plan.objects.create(name="e2e-small", traffic_limit_bytes=limit, duration_days=30)
        alice = stack.user("e2e-alice", plan=plan, limit=limit)
        charlie = stack.user("e2e-charlie", plan=None)

        # alice streams at ~1 MB/s until the proxy cuts her.
        cut = stack.get(alice, "/stream?n=50000000&rate=1000000")
        assert cut.status == 200 and not cut.complete
        assert alice.crossed_at is not None
        latency = cut.ended_at - alice.crossed_at
        assert latency <= 2.0, f"cut {latency:.2f}s after crossing the limit"
        assert_exact(alice)
        sub = Subscription.objects.get(user_id=alice.user_id, is_current=True)
        assert sub.status == SubscriptionStatus.LIMITED

        refused = stack.get(alice)
        assert refused.status == 403 and b"traffic limit reached" in refused.body

        # charlie has no plan: served until the first report, then refused.
        first = stack.get(charlie)
        assert first.status == 200
        last = wait_for(lambda: (r := stack.get(charlie)).status == 403 and r, timeout=5.0)
        assert last and b"no active plan" in last.body
        assert_exact(charlie)

        # A new plan lets alice back in within 2 s.
        plan_assign(user_id=alice.user_id, plan=plan)
        assigned_at = time.monotonic()
        back = wait_for(lambda: stack.get(alice).status == 200, timeout=5.0)
        assert back and time.monotonic() - assigned_at <= 2.0
        print(f"enforcement latency {latency:.3f}s")


# -- fault tests -------------------------------------------------------------------------
@pytest.mark.slow
class PipelineFaultTests(TransactionTestCase):
    """Each fault ends with the plans DB holding exactly the bytes the clients moved."""

    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _stack(self, stack: Stack) -> None:
        self.stack = stack
        self.plan = Plan.objects.create(name="e2e-unlimited", duration_days=30)

    def users(self, count: int) -> list[UserTraffic]:
        return [self.stack.user(f"fault-{i}", plan=self.plan) for i in range(count)]

    def assert_all_exact(self, users: list[UserTraffic]) -> None:
        for user in users:
            assert_exact(user)
            assert user.sent > 0 and user.received > 0

    def test_a_lagging_worker_bills_each_subscription_what_was_moved_under_it(self) -> None:
        """The worker is stopped while the user moves traffic on one plan, gets a new plan
        and moves more: the backlog applied later bills each plan its own bytes."""
        small = Plan.objects.create(name="First", traffic_limit_bytes=10**9, duration_days=30)
        big = Plan.objects.create(name="Second", traffic_limit_bytes=10**9, duration_days=30)
        before = self.stack.user("lagging", plan=small)
        first = Subscription.objects.get(user_id=before.user_id, is_current=True)
        self.stack.worker.stop()
        for _ in range(5):
            assert self.stack.get(before, "/stream?n=300000").status == 200
        # The proxy reports every second, stamped when it reports: let the last report go.
        time.sleep(2.5)
        second = plan_assign(user_id=before.user_id, plan=big)
        after = UserTraffic(before.login, before.secret, user_id=before.user_id)
        for _ in range(3):
            assert self.stack.get(after, "/stream?n=200000").status == 200
        time.sleep(1.5)
        self.stack.worker.start()

        def billed() -> tuple[tuple[int, int], tuple[int, int]]:
            a = Subscription.objects.get(pk=first.pk)
            b = Subscription.objects.get(pk=second.pk)
            return (a.bytes_up, a.bytes_down), (b.bytes_up, b.bytes_down)

        expected = (before.total, after.total)
        assert wait_for(lambda: billed() == expected, timeout=WAIT), (billed(), expected)
        assert Subscription.objects.get(pk=second.pk).status == SubscriptionStatus.ACTIVE

    def test_worker_killed_mid_batch_counts_nothing_twice(self) -> None:
        users = self.users(3)
        with TrafficLoad(self.stack, users, "/stream?n=20000"):
            time.sleep(2.5)
            self.stack.worker.kill()  # SIGKILL: no offset commit, maybe mid-transaction
            time.sleep(1.0)
            self.stack.worker.start()
            time.sleep(1.5)
        self.assert_all_exact(users)

    def test_broker_frozen_for_30s_loses_nothing(self) -> None:
        users = self.users(2)
        with TrafficLoad(self.stack, users, "/stream?n=50000") as load:
            time.sleep(1.5)
            self.stack.broker.freeze()
            try:
                time.sleep(30)
            finally:
                self.stack.broker.thaw()
            time.sleep(1.5)
        assert set(load.statuses) == {200}, "the proxy kept serving while Kafka was frozen"
        self.assert_all_exact(users)

    def test_proxy_sigterm_mid_transfer(self) -> None:
        [user] = self.users(1)
        self.stack.proxy.stop()
        self.stack.proxy = kafka_proxy(
            self.stack.tmp, self.stack.broker.bootstrap, PROXY_DRAIN_TIMEOUT="1"
        ).start()
        result: list[Response] = []
        t = threading.Thread(
            target=lambda: result.append(self.stack.get(user, "/stream?n=50000000&rate=2000000"))
        )
        t.start()
        time.sleep(1.5)
        rc = self.stack.proxy.stop()
        t.join(WAIT)
        assert rc == 0
        assert result and not result[0].complete and user.received > 1_000_000
        self.assert_all_exact([user])

    def test_broker_unreachable_at_proxy_start_and_spool_across_restart(self) -> None:
        users = self.users(2)
        stack = self.stack
        stack.proxy.stop()
        stack.worker.stop()
        stack.broker.stop()
        # Broker gone: the proxy starts, serves, and keeps every delta.
        stack.proxy = kafka_proxy(stack.tmp, stack.broker.bootstrap).start()
        with TrafficLoad(stack, users[:1], "/stream?n=30000") as load:
            time.sleep(2.0)
        assert load.statuses and set(load.statuses) == {200}
        # Stopped while the broker is still away: the deltas go to the spool file.
        assert stack.proxy.stop() == 0
        spooled = list((stack.tmp / "spool").glob("traffic-*.jsonl"))
        assert len(spooled) == 1 and spooled[0].read_bytes().count(b"\n") >= 1
        # A new proxy starts without the broker, serves, then the broker comes back.
        stack.proxy = kafka_proxy(stack.tmp, stack.broker.bootstrap).start()
        with TrafficLoad(stack, users[1:], "/stream?n=30000"):
            time.sleep(1.5)
            stack.broker.start()
            stack.worker.start()
            time.sleep(1.5)
        self.assert_all_exact(users)
        assert wait_for(lambda: not list((stack.tmp / "spool").iterdir()), timeout=10.0)

    def test_plans_db_outage_is_retried_and_nothing_skipped(self) -> None:
        users = self.users(2)
        stack = self.stack
        plans = connections["plans"].settings_dict
        if connections["plans"].vendor == "postgresql":
            forwarder = PortForwarder((plans["HOST"] or "127.0.0.1", int(plans["PORT"] or 5432)))
            stack.worker.stop()
            stack.worker.env["PLANS_DATABASE_URL"] = db_url("plans").replace(
                f":{plans['PORT'] or 5432}/", f":{forwarder.port}/"
            )
            stack.worker.start()
            outage, restore = forwarder.outage, forwarder.restore
        else:
            # SQLite: an exclusive lock held past the worker's 20 s busy timeout.
            holder = sqlite3.connect(plans["NAME"], timeout=30, check_same_thread=False)
            forwarder = None

            def outage() -> None:
                holder.execute("BEGIN EXCLUSIVE")

            def restore() -> None:
                holder.rollback()

        try:
            with TrafficLoad(stack, users, "/stream?n=20000"):
                time.sleep(1.5)
                outage()
                time.sleep(4.0 if forwarder else 22.0)
                restore()
                time.sleep(1.5)
            assert b"plans DB write failed" in stack.worker.log_file.read_bytes()
            self.assert_all_exact(users)
        finally:
            stack.worker.stop(timeout=3.0)
            if forwarder:
                forwarder.close()
