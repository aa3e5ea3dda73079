from __future__ import annotations

from django.apps import AppConfig


class ProxyDaemonConfig(AppConfig):
    name = "proxy_daemon"
    verbose_name = "Proxy daemon"
