"""The operator admin: usage at a glance, filters, actions, user page, totals, plan features."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.db.models import Model
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import ProxyCredential, User
from accounts.selectors import credential_authenticate, user_email_verified
from accounts.services import user_create
from goproxy_site.admin_actions import CONFIRM_FIELD
from goproxy_site.events import schemas
from goproxy_site.formatting import local_time
from goproxy_site.tests.base import AdminTestCase
from plans.models import Plan, Subscription, SubscriptionStatus, UsageBucket
from plans.services import plan_assign
from plans.services import traffic as services_traffic

USERS = reverse("admin:accounts_user_changelist")


class UserChangelistTests(AdminTestCase):
    def test_usage_status_and_expiry_at_a_glance(self) -> None:
        response = self.client.get(USERS)
        self.assertContains(response, "1.0 MB of 1.0 MB (100 %)")  # bob
        self.assertContains(response, "0 B of 1.0 MB (0 %)")  # alice
        self.assertContains(response, 'role="progressbar"', count=2)
        self.assertContains(response, "Limited")
        assert self.alice_sub.expires_at is not None
        self.assertContains(response, local_time(self.alice_sub.expires_at))
        self.assertContains(response, "no plan")  # charlie and op

    def test_filters(self) -> None:
        Subscription.objects.filter(pk=self.alice_sub.pk).update(
            expires_at=timezone.now() + timedelta(days=2)
        )
        cases = {
            "over80": {"bob"},
            "limited": {"bob"},
            "active": {"alice"},
            "expiring": {"alice"},
            "none": {"charlie", "op"},
        }
        for value, expected in cases.items():
            with self.subTest(filter=value):
                response = self.client.get(USERS, {"subscription": value})
                shown = {u.username for u in response.context["cl"].result_list}
                self.assertEqual(shown, expected)


def logged(obj: Model, message: str) -> list[LogEntry]:
    """The admin-log entries of `obj` with this change message."""
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj),
            object_id=str(obj.pk),
            change_message=message,
        )
    )


class UserActionTests(AdminTestCase):
    def test_assign_plan_replacing_one_asks_first(self) -> None:
        pro = Plan.objects.create(name="Pro", traffic_limit_bytes=10**10, duration_days=30)
        page = self.act("assign_plan", [self.charlie, self.alice], plan=str(pro.pk))
        self.assertContains(page, "1 of these users have a current plan: Pro replaces it")
        self.assertContains(page, "Yes, assign Pro")
        self.assertEqual(
            Subscription.objects.get(user_id=self.alice.pk, is_current=True).plan, self.plan
        )
        self.assertFalse(Subscription.objects.filter(user_id=self.charlie.pk).exists())

        response = self.act(
            "assign_plan", [self.charlie, self.alice], plan=str(pro.pk), confirmed=True
        )
        self.assertContains(response, "Assigned Pro to 2 user(s).")
        for user in (self.charlie, self.alice):
            sub = Subscription.objects.get(user_id=user.pk, is_current=True)
            self.assertEqual(sub.plan, pro)
            self.assertEqual(sub.history.get(kind="assigned").message, "assigned by op")
            [entry] = logged(user, "Assigned the Pro plan.")
            self.assertEqual(entry.user, self.operator)

    def test_assigning_to_users_without_a_plan_needs_no_confirmation(self) -> None:
        pro = Plan.objects.create(name="Pro", traffic_limit_bytes=10**10, duration_days=30)
        response = self.act("assign_plan", [self.charlie], plan=str(pro.pk))
        self.assertContains(response, "Assigned Pro to 1 user(s).")

    def test_assign_without_plan_says_so(self) -> None:
        response = self.act("assign_plan", [self.charlie])
        self.assertContains(response, "Choose a plan.")
        self.assertIs(Subscription.objects.filter(user_id=self.charlie.pk).exists(), False)

    def test_extend_by_days_skipping_users_without_plan(self) -> None:
        before = self.alice_sub.expires_at
        assert before is not None
        response = self.act("extend_subscription", [self.alice, self.charlie], days="5")
        self.assertContains(response, "Extended 1 subscription(s) by 5 day(s).")
        self.assertContains(response, "Skipped (no plan): charlie.")
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.expires_at, before + timedelta(days=5))
        self.assertEqual(self.alice_sub.history.get(kind="extended").message, "+5 day(s) by op")
        self.assertEqual(len(logged(self.alice, "Extended the subscription by 5 day(s).")), 1)
        self.assertEqual(logged(self.charlie, "Extended the subscription by 5 day(s)."), [])

    def test_extend_needs_a_positive_number(self) -> None:
        for days, message in [
            ("", "Enter the number of days to extend by."),
            ("0", "Days: Ensure this value is greater than or equal to 1."),
            ("x", "Days: Enter a whole number."),
        ]:
            with self.subTest(days=days):
                response = self.act("extend_subscription", [self.alice], days=days)
                self.assertContains(response, message)

    def test_top_up_in_gigabytes(self) -> None:
        response = self.act("top_up", [self.bob], amount="1.5", amount_unit="1000000000")
        self.assertContains(response, "Topped up 1 subscription(s) by 1.5 GB.")
        self.bob_sub.refresh_from_db()
        self.assertEqual(self.bob_sub.topup_bytes, 1_500_000_000)
        self.assertEqual(self.bob_sub.status, SubscriptionStatus.ACTIVE)
        for amount, message in [
            ("", "Enter the traffic to top up by, e.g. 500 MB or 2 GB."),
            ("lots", "Top-up: Enter the top-up as a number, e.g. 50."),
            ("0", "Top-up: The top-up must be more than zero."),
        ]:
            with self.subTest(amount=amount):
                self.assertContains(self.act("top_up", [self.bob], amount=amount), message)

    def test_reset_usage_asks_first(self) -> None:
        page = self.act("reset_usage", [self.bob])
        self.assertContains(page, "Reset usage?")
        self.assertContains(page, "<li>bob</li>", html=True)
        self.bob_sub.refresh_from_db()
        self.assertEqual(self.bob_sub.bytes_used, 1_000_000)

        response = self.act("reset_usage", [self.bob], confirmed=True)
        self.assertContains(response, "Reset the usage of 1 subscription(s).")
        self.bob_sub.refresh_from_db()
        self.assertEqual(self.bob_sub.bytes_used, 0)
        self.assertEqual(self.bob_sub.status, SubscriptionStatus.ACTIVE)
        self.assertEqual(self.bob_sub.history.get(kind="reset").message, "reset by op")
        self.assertEqual(len(logged(self.bob, "Reset the traffic usage.")), 1)

    def test_revoke_credentials_asks_first(self) -> None:
        page = self.act("revoke_credentials", [self.alice, self.bob])
        self.assertContains(page, "Revoke proxy credentials?")
        self.assertIs(ProxyCredential.objects.get(login="alice-proxy").is_revoked, False)
        response = self.act("revoke_credentials", [self.alice, self.bob], confirmed=True)
        self.assertContains(response, "Revoked 1 credential(s).")
        self.assertIs(ProxyCredential.objects.get(login="alice-proxy").is_revoked, True)
        self.assertEqual(len(logged(self.alice, "Revoked all proxy credentials.")), 1)

    def test_deactivate_asks_first_then_names_the_operator(self) -> None:
        page = self.act("deactivate", [self.alice])
        self.assertContains(page, "Deactivate users?")
        self.assertContains(page, "Yes, deactivate")
        self.assertContains(page, f'name="_selected_action" value="{self.alice.pk}"')
        self.alice.refresh_from_db()
        self.assertIs(self.alice.is_active, True)

        response = self.act("deactivate", [self.alice], confirmed=True)
        self.assertContains(response, "Deactivated 1 user(s).")
        self.alice.refresh_from_db()
        self.alice_sub.refresh_from_db()
        self.assertIs(self.alice.is_active, False)
        self.assertEqual(self.alice_sub.status, SubscriptionStatus.DISABLED)
        disabled = self.alice_sub.history.get(kind="disabled")
        self.assertEqual(disabled.message, "user deactivated by op")
        self.assertEqual(
            len(logged(self.alice, "Deactivated (credentials revoked, plan disabled).")), 1
        )

    def test_bulk_actions_appear_in_recent_actions(self) -> None:
        self.act("extend_subscription", [self.alice, self.bob], days="2")
        index = self.client.get(reverse("admin:index"))
        self.assertContains(index, "Recent actions")
        self.assertContains(index, reverse("admin:accounts_user_change", args=[self.alice.pk]))
        self.assertContains(index, reverse("admin:accounts_user_change", args=[self.bob.pk]))


class UserPageGrantsTests(AdminTestCase):
    def test_the_user_page_shows_what_each_proxy_holds_of_the_quota(self) -> None:
        page = self.client.get(reverse("admin:accounts_user_change", args=[self.alice.pk]))
        self.assertContains(page, "None: no proxy has asked for this user&#x27;s quota.")
        services_traffic.traffic_apply_batch(
            deltas=[],
            grant_requests=[
                schemas.QuotaGrantRequest(
                    user_id=self.alice.pk,
                    instance_id=name,
                    request_id=1,
                    held_bytes=0,
                    want_bytes=300_000,
                )
                for name in ("proxy-a", "proxy-b")
            ],
        )
        page = self.client.get(reverse("admin:accounts_user_change", args=[self.alice.pk]))
        self.assertContains(page, "<td>proxy-a</td><td>300.0 KB</td>", html=False)
        self.assertContains(page, "<td>proxy-b</td><td>300.0 KB</td>", html=False)


class UserPageButtonsTests(AdminTestCase):
    def url(self, user: User, action: str) -> str:
        return reverse("admin:accounts_user_act", args=[user.pk, action])

    def test_the_user_page_has_a_button_for_each_action(self) -> None:
        page = self.client.get(reverse("admin:accounts_user_change", args=[self.alice.pk]))
        for action in (
            "assign_plan",
            "extend_subscription",
            "top_up",
            "reset_usage",
            "revoke_credentials",
            "deactivate",
        ):
            with self.subTest(action=action):
                self.assertContains(page, f'action="{self.url(self.alice, action)}"')
        self.assertContains(page, "Act on alice@example.org")

    def test_a_button_acts_on_this_user_and_comes_back(self) -> None:
        before = self.alice_sub.expires_at
        assert before is not None
        url = self.url(self.alice, "extend_subscription")
        page = self.client.post(url, {"days": "2"}, follow=True)
        change = reverse("admin:accounts_user_change", args=[self.alice.pk])
        self.assertEqual(page.redirect_chain, [(change, 302)])
        self.assertContains(page, "Extended 1 subscription(s) by 2 day(s).")
        self.alice_sub.refresh_from_db()
        self.assertEqual(self.alice_sub.expires_at, before + timedelta(days=2))

    def test_a_destructive_button_confirms_with_a_way_back_to_the_user(self) -> None:
        url = self.url(self.alice, "deactivate")
        page = self.client.post(url, {})
        self.assertContains(page, "Deactivate users?")
        self.assertContains(page, f'action="{url}"')
        change = reverse("admin:accounts_user_change", args=[self.alice.pk])
        self.assertContains(page, f'href="{change}" class="button cancel-link"')
        self.alice.refresh_from_db()
        self.assertIs(self.alice.is_active, True)
        response = self.client.post(url, {CONFIRM_FIELD: "yes"})
        self.assertRedirects(response, change)
        self.alice.refresh_from_db()
        self.assertIs(self.alice.is_active, False)

    def test_unknown_actions_and_gets_are_refused(self) -> None:
        response = self.client.post(self.url(self.alice, "delete_selected"), follow=True)
        self.assertContains(response, "There is no action “delete_selected”.")
        self.assertTrue(User.objects.filter(pk=self.alice.pk).exists())
        self.assertEqual(self.client.get(self.url(self.alice, "deactivate")).status_code, 405)
        missing = self.client.post(reverse("admin:accounts_user_act", args=[999999, "top_up"]))
        self.assertRedirects(missing, USERS)


class UserExportTests(AdminTestCase):
    def rows(self, response: Any) -> list[dict[str, str]]:
        body = b"".join(response.streaming_content).decode()
        return list(csv.DictReader(io.StringIO(body)))

    def test_users_with_usage_as_csv(self) -> None:
        UsageBucket.objects.create(
            user_id=self.bob.pk,
            subscription=self.bob_sub,
            hour=timezone.now().replace(minute=0, second=0, microsecond=0),
            bytes_up=400,
            bytes_down=600,
        )
        response = self.client.get(reverse("admin:accounts_user_export"))
        self.assertEqual(response["Content-Type"], "text/csv; charset=utf-8")
        self.assertIn("attachment;", response["Content-Disposition"])
        rows = {row["username"]: row for row in self.rows(response)}
        self.assertEqual(set(rows), {"alice", "bob", "charlie", "op"})
        bob = rows["bob"]
        self.assertEqual(bob["email"], "bob@example.org")
        self.assertEqual(bob["plan"], "Basic")
        self.assertEqual(bob["status"], "limited")
        self.assertEqual(bob["period_used_bytes"], "1000000")
        self.assertEqual(bob["period_limit_bytes"], "1000000")
        self.assertEqual(bob["period_used_percent"], "100.0")
        self.assertEqual(bob["today_bytes"], "1000")
        self.assertEqual(bob["last_30_days_bytes"], "1000")
        self.assertEqual(rows["charlie"]["status"], "no plan")
        self.assertEqual(rows["charlie"]["period_used_bytes"], "")

    def test_the_export_follows_the_list_filters_and_search(self) -> None:
        export = reverse("admin:accounts_user_export")
        limited = self.rows(self.client.get(export, {"subscription": "limited"}))
        self.assertEqual([row["username"] for row in limited], ["bob"])
        found = self.rows(self.client.get(export, {"q": "alice@"}))
        self.assertEqual([row["username"] for row in found], ["alice"])
        listing = self.client.get(USERS, {"subscription": "limited"})
        self.assertContains(listing, f"{export}?subscription=limited")

    def test_queries_do_not_grow_with_the_users(self) -> None:
        def count() -> tuple[int, int]:
            with (
                CaptureQueriesContext(connections["default"]) as accounts,
                CaptureQueriesContext(connections["plans"]) as plans,
            ):
                self.rows(self.client.get(reverse("admin:accounts_user_export")))
            return len(accounts), len(plans)

        few = count()
        for n in range(30):
            user = user_create(username=f"u{n}", email=f"u{n}@example.org")
            plan_assign(user_id=user.pk, plan=self.plan)
        self.assertEqual(count(), few)

    def test_formulas_stay_text(self) -> None:
        user_create(username="+mallory", email="mallory@example.org")
        rows = self.rows(self.client.get(reverse("admin:accounts_user_export")))
        self.assertIn("'+mallory", [row["username"] for row in rows])

    def test_mark_email_verified(self) -> None:
        dora = user_create(username="dora", email="dora@example.org", password="pw-dora-123")
        self.assertIs(user_email_verified(user_id=dora.pk), False)
        response = self.act("mark_email_verified", [dora, self.alice])
        self.assertContains(response, "Marked 1 e-mail address(es) verified.")  # alice was
        self.assertIs(user_email_verified(user_id=dora.pk), True)

    def test_the_list_shows_who_has_verified(self) -> None:
        user_create(username="dora", email="dora@example.org")
        response = self.client.get(USERS)
        # The personas and the operator have verified their addresses, dora has not.
        self.assertContains(response, '<span class="gp-inactive">unverified</span>', count=1)
        self.assertContains(response, 'dora</span> <span class="gp-inactive">unverified</span>')


class UserPageTests(AdminTestCase):
    def test_shows_subscription_chart_and_credentials(self) -> None:
        UsageBucket.objects.create(
            user_id=self.alice.pk,
            subscription=self.alice_sub,
            hour=timezone.now().replace(minute=0, second=0, microsecond=0),
            bytes_up=300,
            bytes_down=700,
        )
        response = self.client.get(reverse("admin:accounts_user_change", args=[self.alice.pk]))
        self.assertContains(response, "subscription-summary")
        self.assertContains(
            response, reverse("admin:plans_subscription_change", args=[self.alice_sub.pk])
        )
        self.assertContains(
            response, f'<title id="user-{self.alice.pk}-usage-title">alice — last 30 days</title>'
        )
        self.assertContains(response, 'class="bar bar--down"')
        self.assertContains(response, "alice-proxy")

    def test_user_without_plan(self) -> None:
        response = self.client.get(reverse("admin:accounts_user_change", args=[self.charlie.pk]))
        self.assertContains(response, "No plan. Assign one with the buttons above.")
        self.assertContains(response, "No traffic in the last 30 days.")

    def test_add_user_page_still_works(self) -> None:
        response = self.client.get(reverse("admin:accounts_user_add"))
        self.assertEqual(response.status_code, 200)


class AdminWritesGoThroughServicesTests(AdminTestCase):
    """Edits in the admin's forms reach the same services as its actions."""

    def test_deleting_a_user_ends_proxy_access_first(self) -> None:
        url = reverse("admin:accounts_user_delete", args=[self.alice.pk])
        self.client.post(url, {"post": "yes"})
        self.assertFalse(User.objects.filter(pk=self.alice.pk).exists())
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual(sub.status, SubscriptionStatus.DISABLED)

    def test_unticking_active_deactivates_through_the_service(self) -> None:
        model_admin = admin.site._registry[User]
        request = RequestFactory().post("/")
        request.user = self.operator
        self.alice.is_active = False
        form = SimpleNamespace(changed_data=["is_active"])
        model_admin.save_model(request, self.alice, form, change=True)
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        sub = Subscription.objects.get(pk=self.alice_sub.pk)
        self.assertEqual(sub.status, SubscriptionStatus.DISABLED)


class CredentialActionTests(AdminTestCase):
    URL = reverse("admin:accounts_proxycredential_changelist")

    def post(self, action: str, *, confirmed: bool = False) -> Any:
        credential = ProxyCredential.objects.get(login="alice-proxy")
        data = {"action": action, "_selected_action": [str(credential.pk)]}
        if confirmed:
            data[CONFIRM_FIELD] = "yes"
        return self.client.post(self.URL, data, follow=True)

    def test_revoke_asks_first_and_is_logged(self) -> None:
        page = self.post("revoke")
        self.assertContains(page, "Revoke credentials?")
        self.assertContains(page, "<li>alice-proxy</li>", html=True)
        self.assertIs(ProxyCredential.objects.get(login="alice-proxy").is_revoked, False)
        self.assertContains(self.post("revoke", confirmed=True), "Revoked 1 credential(s).")
        credential = ProxyCredential.objects.get(login="alice-proxy")
        self.assertIs(credential.is_revoked, True)
        self.assertEqual(len(logged(credential, "Revoked.")), 1)

    def test_rotate_asks_first_then_shows_the_new_secret_once(self) -> None:
        self.assertContains(self.post("rotate"), "Rotate secrets?")
        self.assertIsNotNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        done = self.post("rotate", confirmed=True)
        self.assertContains(done, "New secret for alice-proxy (shown once):")
        self.assertIsNone(
            credential_authenticate(login="alice-proxy", secret=self.alice_cred.secret)
        )
        credential = ProxyCredential.objects.get(login="alice-proxy")
        self.assertEqual(len(logged(credential, "Rotated the secret.")), 1)
