"""The proxy's control plugin applies throttle events (versioned like restrictions)."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import OutboxEvent, Plan
from plans.tests.test_pipeline_control import RecordingControl
from proxy_daemon.control_plugin import KafkaControlPlugin

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


class ThrottleControlTests(BaseTestCase):
    def setUp(self) -> None:
        self.control = RecordingControl()
        self.plugin = KafkaControlPlugin(self.control)
        self.plan = Plan.objects.create(
            name="Throttle",
            traffic_limit_bytes=100,
            duration_days=30,
            quota_action="throttle",
            throttle_speed_bps=50_000,
        )

    def throttle_charlie(self) -> None:
        with time_machine.travel(T0, tick=False):
            services.plan_assign(user_id=self.charlie.pk, plan=self.plan)
            services.traffic_apply_batch(
                deltas=[
                    schemas.UserConsumedTrafficEvent(
                        user_id=self.charlie.pk,
                        bytes_up=100,
                        bytes_down=0,
                        instance_id="px",
                        seq=1,
                        occurred_at=T0,
                    )
                ]
            )

    def test_start_state_includes_throttled_users(self) -> None:
        self.throttle_charlie()
        self.plugin.load_restrictions()
        self.assertEqual(self.control.speeds, {self.charlie.pk: 50_000})
        self.assertNotIn(self.charlie.pk, self.control.restricted())

    def test_events_throttle_and_a_later_assignment_ends_it(self) -> None:
        self.throttle_charlie()
        rows = list(OutboxEvent.objects.order_by("id"))
        for row in rows:
            self.plugin.apply(schemas.from_json(row.payload))
        self.assertEqual(self.control.speeds, {self.charlie.pk: 50_000})
        services.subscription_top_up(
            subscription=services.Subscription.objects.get(
                user_id=self.charlie.pk, is_current=True
            ),
            bytes_=1000,
        )
        self.plugin.apply(schemas.from_json(OutboxEvent.objects.order_by("-id")[0].payload))
        self.assertEqual(self.control.speeds, {})
        # Replaying the old throttle event changes nothing (older version).
        throttle = next(r for r in rows if "UserThrottledEvent" in r.payload)
        self.plugin.apply(schemas.from_json(throttle.payload))
        self.assertEqual(self.control.speeds, {})
