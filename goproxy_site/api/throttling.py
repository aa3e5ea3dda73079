"""Throttles that read their rate from the settings on every request.

DRF's stock throttles copy DEFAULT_THROTTLE_RATES into a class attribute at import,
so `override_settings` (and a settings reload) would not reach them.
"""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _SettingsRate:
    scope: str | None

    def get_rate(self) -> str | None:
        if self.scope is None:
            return None
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        return None if rate is None else str(rate)


class AnonThrottle(_SettingsRate, AnonRateThrottle):
    """Anonymous clients, keyed by IP address (scope "anon")."""


class UserThrottle(_SettingsRate, UserRateThrottle):
    """Authenticated users, keyed by user id (scope "user")."""
