"""The subscription-URL token: one per user, created once, replaced by rotation."""

from __future__ import annotations

from goproxy_site.tests.base import BaseTestCase
from plans.models import SubscriptionToken
from plans.selectors import subscription_token_of_user
from plans.services import subscription_token_get_or_create, subscription_token_rotate


class SubscriptionTokenTests(BaseTestCase):
    def test_one_token_per_user_until_rotated(self) -> None:
        self.assertIsNone(subscription_token_of_user(user_id=self.charlie.pk))
        first = subscription_token_get_or_create(user_id=self.charlie.pk)
        self.assertEqual(subscription_token_get_or_create(user_id=self.charlie.pk), first)
        self.assertGreaterEqual(len(first), 40)
        rotated = subscription_token_rotate(user_id=self.charlie.pk)
        self.assertNotEqual(rotated, first)
        self.assertEqual(subscription_token_of_user(user_id=self.charlie.pk), rotated)
        self.assertEqual(SubscriptionToken.objects.filter(user_id=self.charlie.pk).count(), 1)

    def test_a_users_first_plan_creates_it(self) -> None:
        self.assertIsNotNone(subscription_token_of_user(user_id=self.alice.pk))
