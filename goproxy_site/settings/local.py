"""Local development (`make run`): SQLite under var/, debug on, private destinations allowed."""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
PROXY_ALLOW_PRIVATE_DESTINATIONS = env.bool("PROXY_ALLOW_PRIVATE_DESTINATIONS", default=True)
