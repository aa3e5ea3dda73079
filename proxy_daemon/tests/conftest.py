"""Fixtures for the proxy's end-to-end tests: users in the test DBs, origins, the daemons.

The daemon runs as the real `manage.py runproxy` subprocess pointed at pytest-django's
test databases; rows are created through services with the DB blocker lifted, so they
are committed and visible to it, and removed at the end of the session.
"""

from __future__ import annotations

import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from accounts.models import User
from accounts.services import credential_issue, credential_revoke, user_create
from goproxy_site.tests.support.net import free_port
from goproxy_site.tests.support.proxy import (
    LIMITED_PLAN,
    LOGINS,
    EchoServer,
    OriginServer,
    ProxyProcess,
    ProxyUser,
    make_tls_origin,
)
from plans.models import Plan, Subscription
from plans.services import plan_assign


@pytest.fixture(scope="session")
def proxy_users(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict]:
    for alias in ("default", "plans"):
        # Test DBs exist only when a collected test is marked django_db for both aliases
        # (every module here sets pytestmark); never write into a developer's database.
        name = str(connections[alias].settings_dict["NAME"])
        if "test_" not in name:
            pytest.fail(f"{alias} is not a test database ({name}); mark the test django_db")
    with django_db_blocker.unblock():
        User.objects.filter(username__in=LOGINS).delete()
        Plan.objects.filter(name="px-limited-plan").delete()
        plan = Plan.objects.create(name="px-limited-plan", **LIMITED_PLAN)
        users: dict[str, ProxyUser] = {}
        for login in LOGINS:
            user = user_create(username=login, email=f"{login}@example.org")
            issued = credential_issue(user=user, login=login)
            users[login] = ProxyUser(user.pk, login, issued.secret)
            if login == "px-revoked":
                credential_revoke(credential=issued.credential)
            if login == "px-inactive":
                User.objects.filter(pk=user.pk).update(is_active=False)
            if login == "px-limited":
                plan_assign(user_id=user.pk, plan=plan)
    yield users
    with django_db_blocker.unblock():
        ids = [u.user_id for u in users.values()]
        Subscription.objects.filter(user_id__in=ids).delete()
        Plan.objects.filter(name="px-limited-plan").delete()
        User.objects.filter(pk__in=ids).delete()


@pytest.fixture(scope="session")
def origin() -> Iterator[OriginServer]:
    server = OriginServer().start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OriginServer, Path]]:
    server, cert = make_tls_origin(tmp_path_factory.mktemp("tls"))
    yield server, cert
    server.shutdown()


@pytest.fixture(scope="session")
def echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def proxy(
    proxy_users: dict,
    tls_origin: tuple[OriginServer, Path],
    echo: EchoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyProcess]:
    control_port = free_port()
    proc = ProxyProcess(
        tmp_path_factory.mktemp("proxy"),
        {
            "PROXY_ALLOWED_CONNECT_PORTS": f"443,{tls_origin[0].port},{echo.port}",
            "PROXY_AUTH_CACHE_TTL": "1",
            "PROXY_HEADER_TIMEOUT": "1",
            "PROXY_UPSTREAM_TIMEOUT": "2",
            "PROXY_TUNNEL_IDLE_TIMEOUT": "2",
            "PROXY_AUTH_FAIL_LIMIT": "100000",
            "PROXY_CONTROL_PLUGINS": "proxy_daemon.tests.control_plugin.LineControlPlugin",
            "PROXY_TEST_CONTROL_PORT": str(control_port),
        },
        "goproxy_site.settings.test",
    ).start()
    proc.control_port = control_port
    yield proc
    rc = proc.stop()
    assert rc == 0, proc.log()


@pytest.fixture(scope="module")
def strict_proxy(
    proxy_users: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """The daemon with the production destination policy (settings_strict); one per
    module, so the failed logins one module provokes never throttle another's."""
    proc = ProxyProcess(
        tmp_path_factory.mktemp("strict"),
        {"PROXY_HEADER_TIMEOUT": "1", "PROXY_DRAIN_TIMEOUT": "5"},
        "proxy_daemon.tests.settings_strict",
    ).start()
    yield proc
    proc.stop()


def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> Any:
    """Collect plain `<Thing>Tests` classes (the project's naming) so they can use fixtures;
    unittest (Django) test cases are collected as usual."""
    if (
        isinstance(obj, type)
        and name.endswith("Tests")
        and not name.startswith("_")
        and not issubclass(obj, unittest.TestCase)
    ):
        return pytest.Class.from_parent(collector, name=name, obj=obj)
    return None
