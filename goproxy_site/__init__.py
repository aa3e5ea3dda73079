"""Project package: settings, database router, Celery app, API router, event contract."""

from __future__ import annotations

from .celery import app as celery_app

__all__ = ("celery_app",)
