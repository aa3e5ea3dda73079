"""The Celery application (https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html).

Celery's own broker (CELERY_BROKER_URL: RabbitMQ, or kombu's filesystem transport for a
server-less `make run`) carries periodic and slow tasks. The Kafka traffic consumer
(the plan-controller) runs inside the worker as a bootstep, not through Celery's broker.
"""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

from plans.bootsteps import PlanControllerStep

# Whether the settings module below is only this module's default; the pytest plugin
# (goproxy_site.tests.fixtures) drops such a default so pytest's own setting wins.
SETTINGS_DEFAULTED = "DJANGO_SETTINGS_MODULE" not in os.environ
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "goproxy_site.settings.local")

app = Celery("goproxy_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _filesystem_dirs() -> None:
    """kombu's filesystem transport needs its folders to exist before it starts."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    for key in ("data_folder_in", "data_folder_out", "processed_folder"):
        if key in options:
            os.makedirs(options[key], exist_ok=True)


# The plan-controller (Kafka consumer loop) runs inside every `celery worker`.
app.steps["worker"].add(PlanControllerStep)


@app.on_after_configure.connect
def _on_configure(sender: Celery, **kwargs: object) -> None:
    _filesystem_dirs()
