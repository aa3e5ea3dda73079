"""The proxy's control plugin: DB snapshot at start, versioned events, credential drops."""

from __future__ import annotations

from goproxy_site.events import schemas
from goproxy_site.tests.base import BaseTestCase
from plans import services
from proxy_daemon.control_plugin import KafkaControlPlugin


class RecordingControl:
    """A ProxyControl that records what the plugin asked for (the server's side is
    covered by the end-to-end tests)."""

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
        old_restriction = services.OutboxEvent.objects.order_by("-id").first()
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
