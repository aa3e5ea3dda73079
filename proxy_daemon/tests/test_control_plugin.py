"""The Kafka control plugin: DB snapshot at start, versioned restriction and throttle
events, credential drops."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from plans.models import OutboxEvent, Plan, Subscription
from proxy_daemon.control_plugin import KafkaControlPlugin

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


class RecordingControl:
    """A ProxyControl that records what the plugin asked for (the registry's side is
    tested in test_registry.py)."""

    def __init__(self) -> None:
        self.restricted_users: dict[int, str] = {}
        self.invalidated: list[dict] = []
        self.refreshed: list[int] = []
        self.speeds: dict[int, int] = {}

    def restrict(self, user_id: int, reason: str) -> None:
        self.restricted_users[user_id] = reason

    def lift(self, user_id: int) -> None:
        self.restricted_users.pop(user_id, None)

    def restricted(self) -> dict[int, str]:
        return dict(self.restricted_users)

    def invalidate_credentials(
        self, *, user_id: int | None = None, login: str | None = None
    ) -> None:
        self.invalidated.append({"user_id": user_id, "login": login})

    def refresh_user_limits(self, user_id: int) -> None:
        self.refreshed.append(user_id)

    def throttle(self, user_id: int, speed_bps: int | None) -> None:
        if speed_bps is None:
            self.speeds.pop(user_id, None)
        else:
            self.speeds[user_id] = speed_bps


class KafkaControlPluginTests(BaseTestCase):
    def setUp(self) -> None:
        self.control = RecordingControl()
        self.plugin = KafkaControlPlugin(self.control)

    def restrict_charlie(self) -> None:
        services.traffic_apply_batch(
            deltas=[
                schemas.UserConsumedTrafficEvent(
                    user_id=self.charlie.pk, bytes_up=1, bytes_down=1, instance_id="px", seq=1
                )
            ]
        )

    def test_start_state_comes_from_the_plans_db(self) -> None:
        self.restrict_charlie()
        services.traffic_apply_batch(
            deltas=[
                schemas.UserConsumedTrafficEvent(
                    user_id=self.bob.pk, bytes_up=1, bytes_down=0, instance_id="px", seq=1
                )
            ]
        )
        self.assertEqual(self.plugin.load_restrictions(), 2)
        self.assertEqual(
            self.control.restricted(),
            {self.charlie.pk: "no active plan", self.bob.pk: "traffic limit reached"},
        )

    def test_stale_events_from_a_replayed_topic_are_ignored(self) -> None:
        self.restrict_charlie()
        old_restriction = OutboxEvent.objects.order_by("-id").first()
        assert old_restriction is not None
        services.plan_assign(user_id=self.charlie.pk, plan=self.plan)
        self.plugin.load_restrictions()  # charlie: lifted, newer version
        self.plugin.apply(schemas.from_json(old_restriction.payload))
        self.assertEqual(self.control.restricted(), {})

    def test_newer_events_restrict_and_lift(self) -> None:
        self.plugin.apply(
            schemas.UserConsumedTrafficWithoutPlan(
                user_id=5, reason=schemas.REASON_EXPIRED, restriction_version=1
            )
        )
        self.assertEqual(self.control.restricted(), {5: "plan expired"})
        self.plugin.apply(
            schemas.PlanAssignedEvent(
                user_id=5, plan_id=1, subscription_id=1, restriction_version=2
            )
        )
        self.assertEqual(self.control.restricted(), {})
        self.assertEqual(self.control.refreshed, [5])

    def test_revocation_and_deactivation_drop_credentials(self) -> None:
        self.plugin.apply(schemas.ProxyCredentialRevoked(user_id=5, login="bob-proxy"))
        self.plugin.apply(schemas.UserDeactivated(user_id=6))
        self.assertEqual(
            self.control.invalidated,
            [{"user_id": None, "login": "bob-proxy"}, {"user_id": 6, "login": None}],
        )


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
            subscription=Subscription.objects.get(user_id=self.charlie.pk, is_current=True),
            bytes_=1000,
        )
        self.plugin.apply(schemas.from_json(OutboxEvent.objects.order_by("-id")[0].payload))
        self.assertEqual(self.control.speeds, {})
        # Replaying the old throttle event changes nothing (older version).
        throttle = next(r for r in rows if "UserThrottledEvent" in r.payload)
        self.plugin.apply(schemas.from_json(throttle.payload))
        self.assertEqual(self.control.speeds, {})
