"""Reads on the plans DB: usage series by hour and day, zero-filled daily series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from goproxy_site.tests.base import BaseTestCase
from plans.models import UsageBucket
from plans.selectors import (
    usage_daily_series,
    usage_daily_totals,
    usage_for_user,
)


class UsageForUserTests(BaseTestCase):
    def test_hourly_and_daily_series(self) -> None:
        day = datetime(2026, 3, 1, tzinfo=UTC)
        for hour, up, down in [(1, 10, 100), (2, 20, 200), (25, 5, 50)]:
            UsageBucket.objects.create(
                user_id=self.alice.pk,
                subscription=self.alice_sub,
                hour=day + timedelta(hours=hour),
                bytes_up=up,
                bytes_down=down,
            )
        hourly = usage_for_user(user_id=self.alice.pk, granularity="hour")
        self.assertEqual([p["bytes_down"] for p in hourly], [100, 200, 50])
        daily = usage_for_user(user_id=self.alice.pk, granularity="day")
        self.assertEqual([(p["bytes_up"], p["bytes_down"]) for p in daily], [(30, 300), (5, 50)])
        ranged = usage_for_user(
            user_id=self.alice.pk, start=day + timedelta(hours=2), end=day + timedelta(days=2)
        )
        self.assertEqual(len(ranged), 2)
        self.assertEqual(usage_for_user(user_id=self.charlie.pk), [])


class DailySeriesTests(BaseTestCase):
    def test_zero_filled_days_oldest_first_summing_hours(self) -> None:
        now = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
        for hour, up, down in [
            (datetime(2026, 11, 24, 1, tzinfo=UTC), 10, 20),
            (datetime(2026, 11, 24, 14, tzinfo=UTC), 5, 5),
            (datetime(2026, 11, 20, 0, tzinfo=UTC), 7, 0),
            (datetime(2026, 10, 1, 0, tzinfo=UTC), 999, 999),  # outside the window
        ]:
            UsageBucket.objects.create(
                user_id=self.alice.pk,
                subscription=self.alice_sub,
                hour=hour,
                bytes_up=up,
                bytes_down=down,
            )
        UsageBucket.objects.create(
            user_id=self.bob.pk,
            subscription=self.bob_sub,
            hour=datetime(2026, 11, 24, 3, tzinfo=UTC),
            bytes_up=1,
            bytes_down=1,
        )
        points = usage_daily_series(user_id=self.alice.pk, days=30, now=now)
        self.assertEqual(len(points), 30)
        self.assertEqual(points[0]["period"], datetime(2026, 10, 26, tzinfo=UTC))
        self.assertEqual(points[-1]["period"], datetime(2026, 11, 24, tzinfo=UTC))
        self.assertEqual((points[-1]["bytes_up"], points[-1]["bytes_down"]), (15, 25))
        self.assertEqual(points[-5]["bytes_up"], 7)
        self.assertEqual(sum(p["bytes_up"] + p["bytes_down"] for p in points), 47)

        totals = usage_daily_totals(days=1, now=now)
        self.assertEqual((totals[0]["bytes_up"], totals[0]["bytes_down"]), (16, 26))

    def test_days_must_be_positive(self) -> None:
        with self.assertRaisesMessage(ValueError, "days must be at least 1"):
            usage_daily_series(user_id=self.alice.pk, days=0)
