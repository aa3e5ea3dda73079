"""Portal pages of plans: the free-plan claim, the subscription URL (panel, rotation and
the URL itself), history and the queued plan on the dashboard.
"""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from accounts.services import user_create, user_delete_account
from goproxy_site.tests.base import BaseTestCase
from plans.history import operator_by
from plans.models import (
    FreePlanClaim,
    Plan,
    QueuedPlan,
    Subscription,
    SubscriptionEvent,
    SubscriptionEventKind,
    SubscriptionStatus,
    SubscriptionToken,
)
from plans.selectors import subscription_get_current
from plans.services import (
    plan_assign,
    subscription_disable,
    subscription_extend,
    subscription_reset_usage,
    subscription_token_get_or_create,
    subscription_top_up,
)


def sub_url(token: str) -> str:
    path = reverse("plans:subscription-url", kwargs={"token": token})
    return settings.PLANS_SUBSCRIPTION_URL_BASE.rstrip("/") + path


class LifecyclePortalCase(BaseTestCase):
    free: Plan
    claimable: Plan
    hidden_free: Plan

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.free = Plan.objects.create(
            name="Starter", traffic_limit_bytes=10_000, duration_days=7, price="0"
        )
        cls.claimable = Plan.objects.get(name="Free")
        cls.hidden_free = Plan.objects.create(
            name="Internal", traffic_limit_bytes=10_000, price="0", is_public=False
        )


class ClaimFreePlanTests(BaseTestCase):
    def setUp(self) -> None:
        self.free = Plan.objects.get(name="Free")

    def test_claim_assigns_the_free_plan_once(self) -> None:
        self.client.force_login(self.charlie)
        url = reverse("plans:claim-free", args=[self.free.pk])
        response = self.client.post(url, follow=True)
        self.assertRedirects(response, reverse("dashboard"))
        self.assertContains(response, "The Free plan is yours: 200.0 MB of traffic until")
        sub = Subscription.objects.get(user_id=self.charlie.pk, is_current=True)
        self.assertEqual(sub.plan, self.free)
        self.assertNotContains(response, "Claim free plan")

        Subscription.objects.filter(pk=sub.pk).update(status=SubscriptionStatus.EXPIRED)
        response = self.client.post(url, follow=True)
        self.assertContains(response, "You have already claimed the free plan once.")
        self.assertEqual(FreePlanClaim.objects.filter(user_id=self.charlie.pk).count(), 1)

    def test_paid_plan_cannot_be_claimed(self) -> None:
        self.client.force_login(self.charlie)
        response = self.client.post(reverse("plans:claim-free", args=[self.plan.pk]), follow=True)
        self.assertContains(response, "Only a plan marked free can be claimed.")
        self.assertIs(Subscription.objects.filter(user_id=self.charlie.pk).exists(), False)

    def test_running_plan_is_not_replaced(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(reverse("plans:claim-free", args=[self.free.pk]), follow=True)
        self.assertContains(response, "You already have a plan")
        self.assertEqual(
            Subscription.objects.get(user_id=self.alice.pk, is_current=True).plan, self.plan
        )

    def test_an_unverified_address_cannot_claim_and_is_told_why(self) -> None:
        dora = user_create(username="dora", email="dora@example.org", password="pw-dora-123")
        self.client.force_login(dora)
        response = self.client.post(reverse("plans:claim-free", args=[self.free.pk]), follow=True)
        self.assertRedirects(response, reverse("dashboard"))
        self.assertContains(response, "Verify your e-mail address first")
        self.assertContains(response, "Send the link again")
        self.assertIs(FreePlanClaim.objects.filter(user_id=dora.pk).exists(), False)

    def test_the_same_address_after_deleting_the_account_cannot_claim_again(self) -> None:
        self.client.force_login(self.charlie)
        self.client.post(reverse("plans:claim-free", args=[self.free.pk]))
        user_delete_account(user=self.charlie)
        again = user_create(
            username="charlie2",
            email="Charlie@Example.org",
            password="pw-charlie-2",
            email_verified=True,
        )
        self.client.force_login(again)
        self.assertNotContains(self.client.get(reverse("dashboard")), "Claim free plan")
        response = self.client.post(reverse("plans:claim-free", args=[self.free.pk]), follow=True)
        self.assertContains(response, "already claimed with this e-mail address")
        self.assertIs(Subscription.objects.filter(user_id=again.pk).exists(), False)

    def test_get_and_unknown_plan(self) -> None:
        self.client.force_login(self.charlie)
        self.assertEqual(
            self.client.get(reverse("plans:claim-free", args=[self.free.pk])).status_code, 405
        )
        self.assertEqual(
            self.client.post(reverse("plans:claim-free", args=[999_999])).status_code, 404
        )


class SubscriptionUrlPanelTests(LifecyclePortalCase):
    def test_dashboard_shows_the_absolute_url_with_copy_button_and_rotate_form(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        token = SubscriptionToken.objects.get(user_id=self.alice.pk).token
        url = sub_url(token)
        self.assertTrue(url.startswith("http"))
        self.assertContains(response, f'value="{url}"')
        self.assertContains(response, 'data-copy-target="field-subscription-url"')
        self.assertContains(response, "upload, download, total and expiry")
        self.assertContains(response, f'action="{reverse("plans:subscription-url-rotate")}"')
        self.assertContains(response, "csrfmiddlewaretoken")
        self.assertIn("no-store", response["Cache-Control"])
        # The URL shown is the one client apps can poll.
        polled = self.client.get(url.removeprefix(settings.PLANS_SUBSCRIPTION_URL_BASE))
        self.assertEqual(polled.status_code, 200)
        self.assertIn("upload=0; download=0; total=1000000", polled["subscription-userinfo"])

    def test_same_url_on_every_visit(self) -> None:
        self.client.force_login(self.alice)
        first = self.client.get(reverse("dashboard")).context["subscription_url"]
        second = self.client.get(reverse("dashboard")).context["subscription_url"]
        self.assertEqual(first, second)
        self.assertEqual(SubscriptionToken.objects.filter(user_id=self.alice.pk).count(), 1)

    def test_rotate_changes_the_token_and_the_old_url_answers_404(self) -> None:
        old = subscription_token_get_or_create(user_id=self.alice.pk)
        old_path = reverse("plans:subscription-url", kwargs={"token": old})
        self.assertEqual(self.client.get(old_path).status_code, 200)
        self.client.force_login(self.alice)
        response = self.client.post(reverse("plans:subscription-url-rotate"), follow=True)
        self.assertRedirects(response, reverse("dashboard") + "#subscription-url-heading")
        self.assertContains(response, "the old one stops working now")
        new = SubscriptionToken.objects.get(user_id=self.alice.pk).token
        self.assertNotEqual(new, old)
        self.assertContains(response, f'value="{sub_url(new)}"')
        self.assertNotContains(response, old)
        gone = self.client.get(old_path)
        self.assertEqual(gone.status_code, 404)
        self.assertContains(gone, "Unknown subscription URL", status_code=404)
        new_path = reverse("plans:subscription-url", kwargs={"token": new})
        self.assertEqual(self.client.get(new_path).status_code, 200)

    def test_without_a_plan_the_dashboard_only_offers_to_create_it(self) -> None:
        self.client.force_login(self.charlie)
        response = self.client.get(reverse("dashboard"))
        self.assertIsNone(response.context["subscription_url"])
        self.assertContains(response, "Create my subscription URL")
        self.assertIs(SubscriptionToken.objects.filter(user_id=self.charlie.pk).exists(), False)
        response = self.client.post(reverse("plans:subscription-url-rotate"), follow=True)
        self.assertContains(response, "Your subscription URL is ready.")
        token = SubscriptionToken.objects.get(user_id=self.charlie.pk).token
        self.assertContains(response, f'value="{sub_url(token)}"')

    def test_the_first_plan_creates_the_url(self) -> None:
        self.assertIs(SubscriptionToken.objects.filter(user_id=self.charlie.pk).exists(), False)
        self.client.force_login(self.charlie)
        self.client.post(reverse("plans:claim-free", args=[self.claimable.pk]))
        token = SubscriptionToken.objects.get(user_id=self.charlie.pk).token
        response = self.client.get(reverse("dashboard"))
        self.assertEqual(response.context["subscription_url"], sub_url(token))

    def test_rotate_needs_post_login_and_csrf(self) -> None:
        old = subscription_token_get_or_create(user_id=self.alice.pk)
        url = reverse("plans:subscription-url-rotate")
        anonymous = self.client.post(url)
        self.assertRedirects(anonymous, f"{reverse('account_login')}?next={url}")
        csrf_client = Client(enforce_csrf_checks=True)
        csrf_client.force_login(self.alice)
        self.assertEqual(csrf_client.post(url).status_code, 403)
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get(url).status_code, 405)
        self.assertEqual(SubscriptionToken.objects.get(user_id=self.alice.pk).token, old)

    def test_another_users_token_is_never_shown_or_rotated(self) -> None:
        bob_token = subscription_token_get_or_create(user_id=self.bob.pk)
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        self.assertNotContains(response, bob_token)
        self.client.post(reverse("plans:subscription-url-rotate"))
        self.assertEqual(SubscriptionToken.objects.get(user_id=self.bob.pk).token, bob_token)
        response = self.client.get(reverse("dashboard"))
        self.assertNotContains(response, bob_token)
        alice_token = SubscriptionToken.objects.get(user_id=self.alice.pk).token
        self.assertContains(response, alice_token)


class HistoryPanelTests(LifecyclePortalCase):
    def test_latest_ten_events_newest_first_and_only_ones_own(self) -> None:
        for n in range(1, 13):
            subscription_top_up(subscription=self.alice_sub, bytes_=n * 1000, by="by op-anna")
        subscription_top_up(subscription=self.bob_sub, bytes_=5, by="by op-anna")
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        rows = response.context["history_rows"]
        self.assertEqual(len(rows), 10)
        self.assertEqual(
            rows[0]["what"],
            "12.0 KB added to this period's traffic by the operator (1.1 MB in all).",
        )
        self.assertTrue(rows[-1]["what"].startswith("3.0 KB added"))
        self.assertContains(response, 'id="subscription-history"')
        self.assertNotContains(response, "<td>2.0 KB added")
        self.assertNotContains(response, "<td>5 B added")  # bob's
        self.assertNotContains(response, "op-anna")  # operators stay "the operator"

    @override_settings(PLANS_TIME_ZONE="Europe/Berlin")
    def test_history_reads_as_sentences_in_local_time_without_ids(self) -> None:
        pro = Plan.objects.create(name="Pro", traffic_limit_bytes=10**9, duration_days=30)
        with time_machine.travel(datetime(2026, 1, 15, 10, 0, tzinfo=UTC), tick=False):
            sub = plan_assign(user_id=self.charlie.pk, plan=pro, by=operator_by("op"))
            subscription_extend(subscription=sub, days=3, by=operator_by("op"))
            subscription_reset_usage(subscription=sub, by=operator_by("op"))
            subscription_disable(subscription=sub, reason="disabled", by=operator_by("op"))
        self.client.force_login(self.charlie)
        response = self.client.get(reverse("dashboard"))
        sentences = [row["what"] for row in response.context["history_rows"]]
        self.assertEqual(
            sentences,
            [
                "The operator disabled the plan.",
                "The operator reset your traffic; the closed period used 0 B.",
                "The plan was extended by 3 days by the operator; it now runs until "
                "17 Feb 2026, 11:00 CET.",
                "The plan started; it runs until 14 Feb 2026, 11:00 CET.",
                "The operator gave you the Pro plan.",
            ],
        )
        self.assertContains(response, "15 Jan 2026, 11:00 CET")
        self.assertContains(response, "times in Europe/Berlin")
        self.assertNotContains(response, f"user {self.charlie.pk}")
        self.assertNotContains(response, "by op")

    def test_user_without_plan_sees_no_changes_yet(self) -> None:
        self.client.force_login(self.charlie)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(response, "No changes yet.")
        self.assertContains(response, "No plan is queued.")


class QueuedPlanTests(LifecyclePortalCase):
    def test_catalogue_offers_queue_only_for_public_plans_without_price(self) -> None:
        self.client.force_login(self.alice)
        for page in (reverse("plans:catalogue"), reverse("dashboard")):
            response = self.client.get(page)
            self.assertContains(response, reverse("plans:queue", args=[self.free.pk]))
            self.assertNotContains(response, reverse("plans:queue", args=[self.plan.pk]))
            self.assertNotContains(response, reverse("plans:queue", args=[self.hidden_free.pk]))
        self.client.logout()
        anonymous = self.client.get(reverse("plans:catalogue"))
        self.assertNotContains(anonymous, "Queue as next plan")

    def test_queue_then_cancel(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(reverse("plans:queue", args=[self.free.pk]), follow=True)
        self.assertRedirects(response, reverse("dashboard"))
        self.assertContains(response, "The Starter plan is queued")
        queued = QueuedPlan.objects.get(user_id=self.alice.pk)
        self.assertEqual(queued.plan, self.free)
        self.assertEqual(queued.queued_by, "by the user")
        self.assertContains(response, 'id="queued-plan"')
        self.assertContains(response, f'action="{reverse("plans:queue-cancel")}"')
        self.assertContains(response, "Queued as your next plan")
        self.assertContains(
            response, "<td>The Starter plan was queued as your next plan by you.</td>"
        )
        # The current plan is untouched.
        self.assertEqual(
            Subscription.objects.get(user_id=self.alice.pk, is_current=True).plan, self.plan
        )

        response = self.client.post(reverse("plans:queue-cancel"), follow=True)
        self.assertContains(response, "Your queued plan is cancelled.")
        self.assertIs(QueuedPlan.objects.filter(user_id=self.alice.pk).exists(), False)
        self.assertTrue(
            SubscriptionEvent.objects.filter(
                user_id=self.alice.pk, kind=SubscriptionEventKind.QUEUE_CANCELLED
            ).exists()
        )
        self.assertContains(response, "No plan is queued.")
        again = self.client.post(reverse("plans:queue-cancel"), follow=True)
        self.assertContains(again, "You have no queued plan.")

    def test_paid_hidden_and_unknown_plans_are_refused(self) -> None:
        self.client.force_login(self.alice)
        for plan in (self.plan, self.hidden_free):
            response = self.client.post(reverse("plans:queue", args=[plan.pk]), follow=True)
            self.assertContains(response, f"The {plan.name} plan cannot be queued")
        self.assertIs(QueuedPlan.objects.filter(user_id=self.alice.pk).exists(), False)
        self.assertEqual(self.client.post(reverse("plans:queue", args=[999_999])).status_code, 404)
        self.assertEqual(
            self.client.get(reverse("plans:queue", args=[self.free.pk])).status_code, 405
        )

    def test_without_a_plan_the_queued_plan_starts_at_once(self) -> None:
        self.client.force_login(self.charlie)
        response = self.client.post(reverse("plans:queue", args=[self.free.pk]), follow=True)
        self.assertContains(response, "The Starter plan is now your plan.")
        current = Subscription.objects.get(user_id=self.charlie.pk, is_current=True)
        self.assertEqual(current.plan, self.free)
        self.assertIs(QueuedPlan.objects.filter(user_id=self.charlie.pk).exists(), False)

    def test_cancel_only_touches_ones_own_queue(self) -> None:
        QueuedPlan.objects.create(user_id=self.bob.pk, plan=self.free, queued_by="operator")
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        self.assertIsNone(response.context["queued"])
        response = self.client.post(reverse("plans:queue-cancel"), follow=True)
        self.assertContains(response, "You have no queued plan.")
        self.assertIs(QueuedPlan.objects.filter(user_id=self.bob.pk).exists(), True)


class FreePlanNeverQueueableTests(LifecyclePortalCase):
    def test_the_free_plan_is_claimed_once_never_queued(self) -> None:
        self.client.force_login(self.charlie)
        page = self.client.get(reverse("plans:catalogue"))
        self.assertNotContains(page, reverse("plans:queue", args=[self.claimable.pk]))
        self.client.post(reverse("plans:queue", args=[self.claimable.pk]), follow=True)
        self.assertFalse(QueuedPlan.objects.filter(user_id=self.charlie.pk).exists())
        self.assertIsNone(subscription_get_current(user_id=self.charlie.pk))


class PortalCardsTests(LifecyclePortalCase):
    def test_next_plan_card_offers_only_what_can_be_queued(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(
            response,
            "No plan is queued. You can queue Starter as your next plan from the list below.",
        )
        self.assertNotContains(response, "queue a free plan")
        Plan.objects.filter(pk=self.free.pk).update(is_public=False)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(
            response, "No plan is queued. Your next plan is queued by the operator."
        )
        self.assertNotContains(response, "Queue as next plan")

    def test_plan_cards_show_speed_connection_and_device_limits(self) -> None:
        Plan.objects.filter(pk=self.plan.pk).update(
            speed_limit_bps=12_500_000,
            max_connections=8,
            device_limit=3,
            quota_action="throttle",
            throttle_speed_bps=125_000,
        )
        response = self.client.get(reverse("plans:catalogue"))
        self.assertContains(response, "Speed up to <strong>100 Mbit/s</strong>")
        self.assertContains(response, "Up to 8 connections at once")
        self.assertContains(response, "Up to 3 devices (IP addresses) at once")
        self.assertContains(response, "After the traffic: slowed to 1 Mbit/s, not cut off")
        # The Starter plan has no limits and says so.
        self.assertContains(response, "No speed limit")
        self.assertContains(response, "Unlimited connections")
        self.assertContains(response, "Any number of devices")
