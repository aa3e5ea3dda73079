"""End-to-end lifecycle through the real proxy, tansu, the Celery worker (plan-controller
bootstep + notification tasks), Redis and both databases."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from pathlib import Path

import pytest
from django.test import TransactionTestCase

from goproxy_site.tests.support.net import wait_for
from goproxy_site.tests.support.proxy import basic
from goproxy_site.tests.support.receiver import Receiver
from goproxy_site.tests.support.stack import Stack
from goproxy_site.tests.support.traffic import WAIT
from plans.models import Plan, QueuedPlan, Subscription, WebhookDelivery, WebhookEndpoint
from plans.services import plan_queue

THROTTLE_BPS = 400_000


def timed_get(stack: Stack, login: str, secret: str, n: int, source: str = "127.0.0.1") -> dict:
    """GET /stream?n= through the proxy from `source`; status, bytes and the throughput:
    the least-squares slope of bytes received over time after the first 1 MB, so neither
    the bucket's one-second burst nor the step pattern of paced sends biases it."""
    head = (
        f"GET http://127.0.0.1:{stack.origin.port}/stream?n={n} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{stack.origin.port}\r\n"
        f"Proxy-Authorization: {basic(login, secret)}\r\nConnection: close\r\n\r\n"
    ).encode()
    data = bytearray()
    samples: list[tuple[float, int]] = []
    with socket.create_connection(("127.0.0.1", stack.proxy.port), WAIT, (source, 0)) as sock:
        sock.sendall(head)
        for _ in range(100_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 1_000_000:
                samples.append((time.monotonic(), len(data)))
    status = int(data.split(b" ", 2)[1]) if data else 0
    rate = None
    if len(samples) > 10:
        mt = sum(t for t, _ in samples) / len(samples)
        mb = sum(b for _, b in samples) / len(samples)
        var = sum((t - mt) ** 2 for t, _ in samples)
        rate = sum((t - mt) * (b - mb) for t, b in samples) / var if var else None
    return {"status": status, "bytes": len(data), "rate": rate, "body": bytes(data[-300:])}


class LifecycleEndToEndTests(TransactionTestCase):
    databases = {"default", "plans"}

    @pytest.fixture(autouse=True)
    def _stack(self, stack: Stack, tmp_path: Path) -> None:
        self.stack = stack

    def test_throttled_at_plan_speed_and_signed_webhook(self) -> None:
        receiver = Receiver(200)
        self.addCleanup(receiver.shutdown)
        WebhookEndpoint.objects.create(name="e2e", url=receiver.url, secret="e2e-secret")
        plan = Plan.objects.create(
            name="e2e-throttle",
            traffic_limit_bytes=500_000,
            duration_days=30,
            quota_action="throttle",
            throttle_speed_bps=THROTTLE_BPS,
        )
        user = self.stack.user("e2e-slow", plan=plan)
        first = timed_get(self.stack, user.login, user.secret, 600_000)
        assert first["status"] == 200
        sub = wait_for(
            lambda: Subscription.objects.filter(
                user_id=user.user_id, is_current=True, status="limited"
            ).first(),
            timeout=WAIT,
        )
        assert sub is not None and sub.is_throttled
        time.sleep(1.0)  # the throttle event reaches the proxy through the control topic
        slow = timed_get(self.stack, user.login, user.secret, 3_000_000)
        assert slow["status"] == 200 and slow["bytes"] > 3_000_000
        assert slow["rate"] is not None
        ratio = slow["rate"] / THROTTLE_BPS
        print(f"throttled download at {slow['rate']:.0f} B/s = {ratio:.3f} x plan speed")
        assert 0.9 <= ratio <= 1.1
        # 80 % and 100 % notifications went out through the worker as signed webhooks.
        got = wait_for(lambda: len(receiver.received) >= 2, timeout=WAIT)
        assert got, WebhookDelivery.objects.values_list("status", "last_error")
        for headers, body in receiver.received:
            expected = hmac.new(
                b"e2e-secret",
                headers["X-Goproxy-Timestamp"].encode() + b"." + body,
                hashlib.sha256,
            ).hexdigest()
            assert headers["X-Goproxy-Signature"] == "sha256=" + expected
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}

    def test_device_limit_refusal_and_queued_plan_without_refusal(self) -> None:
        small = Plan.objects.create(
            name="e2e-small", traffic_limit_bytes=1_000_000, duration_days=30, device_limit=1
        )
        big = Plan.objects.create(name="e2e-big", traffic_limit_bytes=10**9, duration_days=30)
        user = self.stack.user("e2e-renew", plan=small)
        ok = timed_get(self.stack, user.login, user.secret, 1000)
        assert ok["status"] == 200
        refused = timed_get(self.stack, user.login, user.secret, 1000, source="127.0.0.2")
        assert refused["status"] == 403
        assert b"device limit reached: the plan allows 1 client IP" in refused["body"]

        plan_queue(user_id=user.user_id, plan=big, by="e2e")
        statuses = []
        for _ in range(40):  # ~4 MB against a 1 MB quota
            statuses.append(timed_get(self.stack, user.login, user.secret, 100_000)["status"])
            if not QueuedPlan.objects.exists() and len(statuses) > 15:
                break
        assert set(statuses) == {200}, statuses
        current = wait_for(
            lambda: Subscription.objects.filter(
                user_id=user.user_id, is_current=True, plan=big
            ).first(),
            timeout=WAIT,
        )
        assert current is not None and current.status == "active"
        old = Subscription.objects.get(user_id=user.user_id, plan=small)
        assert old.bytes_used >= 1_000_000 and not old.is_current
