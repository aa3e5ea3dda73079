"""Seed a demo operator and a demo proxy user on the Free plan (idempotent).

Each run resets the operator's password and rotates the demo credential, then prints
both with the admin URL, the portal URL and a ready `curl -x` line: secrets are never
stored in clear, so they can only be shown when they are created.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import ProxyCredential, User
from accounts.services import credential_issue, credential_rotate, user_create
from plans.models import Plan
from plans.selectors import subscription_get_current
from plans.services import plan_assign

OPERATOR = "operator"
OPERATOR_EMAIL = "operator@example.com"
DEMO_USER = "demo"
DEMO_LOGIN = "demo-proxy"


class Command(BaseCommand):
    help = "Create (or refresh) the demo operator and demo proxy user and print how to use them."

    def handle(self, *args: Any, **options: Any) -> None:
        password = secrets.token_urlsafe(12)
        operator = User.objects.filter(username=OPERATOR).first()
        if operator is None:
            operator = user_create(
                username=OPERATOR,
                email=OPERATOR_EMAIL,
                password=password,
                is_staff=True,
                is_superuser=True,
                email_verified=True,
            )
        else:
            with transaction.atomic():
                operator.set_password(password)
                operator.save(update_fields=["password"])

        demo = User.objects.filter(username=DEMO_USER).first() or user_create(
            username=DEMO_USER,
            email="demo@example.com",
            password=secrets.token_urlsafe(12),
            email_verified=True,
        )
        if subscription_get_current(user_id=demo.pk) is None:
            plan_assign(user_id=demo.pk, plan=Plan.objects.get(name="Free"))
        credential = ProxyCredential.objects.filter(login=DEMO_LOGIN, revoked_at=None).first()
        issued = (
            credential_rotate(credential=credential)
            if credential
            else credential_issue(user=demo, login=DEMO_LOGIN)
        )

        host = settings.PROXY_PUBLIC_HOST
        port = settings.PROXY_PORT
        site = settings.SITE_URL.rstrip("/")
        proxy_url = f"http://{issued.credential.login}:{issued.secret}@{host}:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "goproxy demo is seeded:",
                    f"  admin   {site}/admin/   e-mail {operator.email}  password {password}",
                    f"  portal  {site}/",
                    f"  proxy   {host}:{port}   login {issued.credential.login}",
                    f"  try:    curl -x {proxy_url} {site}/",
                    "",
                ]
            )
        )
