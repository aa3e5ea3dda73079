"""Device limit shared by proxy instances through a real Redis (127.0.0.1:6379)."""

from __future__ import annotations

import os
import uuid

import redis
from django.conf import settings

from goproxy_site.tests.base import BaseTestCase
from plans.models import Plan
from plans.services import plan_assign
from proxy_daemon.devices import DeviceGuard
from proxy_daemon.store import plan_limits


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class DeviceLimitTests(BaseTestCase):
    def setUp(self) -> None:
        self.redis = redis.Redis.from_url(settings.PLANS_DEVICE_REDIS_URL)
        suffix = os.environ.get("GOPROXY_TEST_DB_SUFFIX", "")
        self.prefix = f"goproxy:test{suffix}:{uuid.uuid4().hex}:"
        self.addCleanup(lambda: [self.redis.delete(k) for k in self.redis.keys(self.prefix + "*")])
        self.clock = Clock()
        plan = Plan.objects.create(name="Two devices", traffic_limit_bytes=10**9, device_limit=2)
        plan_assign(user_id=self.charlie.pk, plan=plan)

    def guard(self) -> DeviceGuard:
        """One proxy instance's guard (cache off, so every call asks Redis)."""
        return DeviceGuard(
            self.redis,
            window=60.0,
            cache_seconds=0.0,
            prefix=self.prefix,
            clock=self.clock,
        )

    def test_limit_holds_across_instances_and_the_window_slides(self) -> None:
        a, b = self.guard(), self.guard()
        uid = self.charlie.pk
        limit = plan_limits(uid).device_limit
        self.assertEqual(limit, 2)
        assert limit is not None
        self.assertIs(a.admit(uid, "10.0.0.1", limit), True)
        self.assertIs(b.admit(uid, "10.0.0.2", limit), True)
        self.assertIs(a.admit(uid, "10.0.0.3", limit), False)  # a third address, either proxy
        self.assertIs(b.admit(uid, "10.0.0.3", limit), False)
        self.assertIs(b.admit(uid, "10.0.0.1", limit), True)  # a known address is always fine
        self.clock.now += 30
        self.assertIs(a.admit(uid, "10.0.0.1", limit), True)  # refreshes .1; .2 seen 30 s ago
        self.clock.now += 31
        self.assertIs(b.admit(uid, "10.0.0.3", limit), True)  # .2 left the window
        self.assertIs(a.admit(uid, "10.0.0.2", limit), False)

    def test_redis_down_fails_open(self) -> None:
        dead = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)
        guard = DeviceGuard(dead, window=60, cache_seconds=0, prefix=self.prefix)
        with self.assertLogs("proxy_daemon.devices", "WARNING") as logs:
            self.assertIs(guard.admit(1, "10.0.0.9", 1), True)
            self.assertIs(guard.admit(1, "10.0.0.8", 1), True)
        self.assertIn("device limit check for user 1 skipped", logs.output[0])
