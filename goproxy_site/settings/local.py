"""Local development (`make run`): SQLite under var/, debug on, private destinations allowed.

Everything runs on one machine with no server to install: tansu as the Kafka broker
(Procfile `kafka`), kombu's filesystem transport under var/celery as Celery's broker
unless CELERY_BROKER_URL names one (RabbitMQ in CI and compose).
"""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import CELERY_FILESYSTEM_TRANSPORT_OPTIONS, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
PROXY_ALLOW_PRIVATE_DESTINATIONS = env.bool("PROXY_ALLOW_PRIVATE_DESTINATIONS", default=True)

PROXY_REPORTER = env("PROXY_REPORTER", default="proxy_daemon.reporters.kafka.KafkaReporter")
PROXY_CONTROL_PLUGINS = env.list(
    "PROXY_CONTROL_PLUGINS", default=["proxy_daemon.control_plugin.KafkaControlPlugin"]
)

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = CELERY_FILESYSTEM_TRANSPORT_OPTIONS
