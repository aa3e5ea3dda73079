"""Concurrent writes by one user, through the real HTTP server: never a 500.

On SQLite (the embedded default) a deferred transaction that read before writing cannot
wait for the write lock, and the requests that lost the race answered 500 "database is
locked". Write transactions now take the lock at BEGIN (`transaction_mode` IMMEDIATE in
settings), so they queue within the busy timeout. The same tests run on PostgreSQL,
where row locks serialise them.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from django.conf import settings
from django.db import connections
from django.test import LiveServerTestCase

from accounts.models import ProxyCredential
from accounts.services import api_token_issue, user_create
from plans.models import FreePlanClaim, Plan, Subscription

PARALLEL = 20


class ConcurrentWritesTests(LiveServerTestCase):
    databases = {"default", "plans"}

    def setUp(self) -> None:
        self.user = user_create(
            username="racer",
            email="racer@example.org",
            password="pw-racer-123",
            email_verified=True,
        )
        self.token = api_token_issue(user=self.user)[0]
        Plan.objects.get_or_create(
            name="Free",
            defaults={"traffic_limit_bytes": 200_000_000, "duration_days": 1, "is_free": True},
        )

    def _parallel_posts(self, path: str) -> Counter[int]:
        start = threading.Barrier(PARALLEL)

        def post(_: int) -> int:
            start.wait()
            response = requests.post(
                f"{self.live_server_url}{path}",
                json={},
                headers={"Authorization": f"Token {self.token}"},
                timeout=60,
            )
            return response.status_code

        with ThreadPoolExecutor(PARALLEL) as pool:
            statuses = Counter(pool.map(post, range(PARALLEL)))
        connections.close_all()
        return statuses

    def test_parallel_free_plan_claims_answer_201_once_and_409_otherwise(self) -> None:
        statuses = self._parallel_posts("/api/v1/me/subscription/claim-free/")
        self.assertEqual(statuses, Counter({201: 1, 409: PARALLEL - 1}))
        self.assertEqual(FreePlanClaim.objects.filter(user_id=self.user.pk).count(), 1)
        self.assertEqual(Subscription.objects.filter(user_id=self.user.pk).count(), 1)

    def test_parallel_credential_issues_stop_at_the_limit_with_400(self) -> None:
        limit = settings.API_MAX_LIVE_CREDENTIALS
        statuses = self._parallel_posts("/api/v1/me/credentials/")
        self.assertEqual(statuses, Counter({201: limit, 400: PARALLEL - limit}))
        self.assertEqual(ProxyCredential.objects.filter(user=self.user).count(), limit)
