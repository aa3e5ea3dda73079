"""Test settings with the production destination policy (private destinations refused)."""

from __future__ import annotations

from goproxy_site.settings.test import *  # noqa: F403

PROXY_ALLOW_PRIVATE_DESTINATIONS = False
PROXY_AUTH_FAIL_LIMIT = 3
