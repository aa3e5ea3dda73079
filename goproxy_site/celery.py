"""The Celery application (https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "goproxy_site.settings.local")

app = Celery("goproxy_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
