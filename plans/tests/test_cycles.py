"""Reset-cycle arithmetic: calendar boundaries at local midnight, every-N-days steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.test import SimpleTestCase

from plans import cycles

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


class CycleTests(SimpleTestCase):
    def test_calendar_boundaries_are_local_midnights(self) -> None:
        after = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # Sunday 29th, 00:30 after DST? no
        daily = cycles.next_boundary(
            cycle="daily", every_days=None, anchor=T0, after=after, tz=BERLIN
        )
        # 2026-03-28 23:30 Berlin (CET) -> next midnight 2026-03-29 00:00 CET = 23:00 UTC
        self.assertEqual(daily, datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
        # The following midnight is after the DST switch (CEST, UTC+2).
        assert daily is not None
        nxt = cycles.next_boundary(
            cycle="daily", every_days=None, anchor=T0, after=daily, tz=BERLIN
        )
        self.assertEqual(nxt, datetime(2026, 3, 29, 22, 0, tzinfo=UTC))
        weekly = cycles.next_boundary(
            cycle="weekly", every_days=None, anchor=T0, after=T0, tz=ZoneInfo("UTC")
        )
        self.assertEqual(weekly, datetime(2026, 1, 19, tzinfo=UTC))  # Monday
        monthly = cycles.next_boundary(
            cycle="monthly",
            every_days=None,
            anchor=T0,
            after=datetime(2026, 12, 5, tzinfo=UTC),
            tz=ZoneInfo("UTC"),
        )
        self.assertEqual(monthly, datetime(2027, 1, 1, tzinfo=UTC))

    def test_every_n_days_counts_from_the_start(self) -> None:
        b = cycles.next_boundary(
            cycle="every_n_days", every_days=10, anchor=T0, after=T0, tz=BERLIN
        )
        self.assertEqual(b, T0 + timedelta(days=10))
        b2 = cycles.next_boundary(
            cycle="every_n_days", every_days=10, anchor=T0, after=T0 + timedelta(days=10), tz=BERLIN
        )
        self.assertEqual(b2, T0 + timedelta(days=20))
        self.assertIsNone(
            cycles.next_boundary(cycle="none", every_days=None, anchor=T0, after=T0, tz=BERLIN)
        )
