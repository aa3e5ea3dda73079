"""Operator admin for users and proxy credentials.

A user's subscription lives on the plans DB: the changelist fetches the current
subscriptions of the shown page in one query (no cross-DB join), and filters turn a
plans-DB question into a list of user ids.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from goproxy_site.admin_actions import AuditedActionsMixin, Confirmation
from goproxy_site.admin_columns import time_column
from goproxy_site.csv_export import csv_response
from goproxy_site.formatting import human_bytes, local_time
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.action_forms import (
    SubscriptionActionForm,
    acting_operator,
    chosen_days,
    chosen_plan,
    chosen_top_up,
)
from plans.charts import daily_usage_svg, subscription_usage_bar
from plans.models import Subscription, SubscriptionStatus

from . import selectors, services
from .exports import USER_USAGE_HEADER, user_usage_rows
from .models import ProxyCredential, User, login_validator

# Actions the user page offers as buttons (each runs the list action on this one user).
USER_PAGE_ACTIONS = (
    "assign_plan",
    "extend_subscription",
    "top_up",
    "reset_usage",
    "revoke_credentials",
    "deactivate",
)


RESET_USAGE = Confirmation(
    title="Reset usage?",
    question="The current period's traffic goes to the reset log and the counters start "
    "again at zero; limited users get full access back.",
    button="Yes, reset usage",
)
REVOKE_CREDENTIALS = Confirmation(
    title="Revoke proxy credentials?",
    question="Every proxy credential of these users stops working at once; they need new "
    "ones to use the proxy again.",
    button="Yes, revoke them",
)
REVOKE_SELECTED = Confirmation(
    title="Revoke credentials?",
    question="These credentials stop working at once, on every proxy.",
    button="Yes, revoke",
)
ROTATE_SELECTED = Confirmation(
    title="Rotate secrets?",
    question="The current secrets stop working at once; the new ones are shown once, on "
    "the next page.",
    button="Yes, rotate",
)
DEACTIVATE = Confirmation(
    title="Deactivate users?",
    question="These users can no longer log in, every proxy credential of theirs is "
    "revoked and their plan is disabled.",
    button="Yes, deactivate",
)


class SubscriptionStateFilter(admin.SimpleListFilter):
    title = "subscription"
    parameter_name = "subscription"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[User]
    ) -> list[tuple[str, str]]:
        return [
            *[(s.value, s.label) for s in SubscriptionStatus],
            ("over80", "Over 80 % used"),
            ("expiring", "Expiring within 3 days"),
            ("none", "No plan"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> QuerySet[User]:
        value = self.value()
        if not value:
            return queryset
        if value == "none":
            return queryset.exclude(pk__in=plan_selectors.user_ids_with_current_subscription())
        if value == "over80":
            ids = plan_selectors.user_ids_near_limit()
        elif value == "expiring":
            ids = plan_selectors.user_ids_expiring()
        else:
            ids = plan_selectors.user_ids_with_status(statuses=[value])
        return queryset.filter(pk__in=ids)


# The instance attributes holding a user's current subscription and whether their e-mail
# is verified while the admin renders them: the changelist fills them for a whole page
# in one query each (no N+1).
SUBSCRIPTION_ATTR = "current_subscription"
VERIFIED_ATTR = "email_is_verified"


class UserChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        user_ids = [u.pk for u in self.result_list]
        subs = plan_selectors.subscriptions_current_by_user(user_ids=user_ids)
        verified = selectors.user_ids_email_verified(user_ids=user_ids)
        for user in self.result_list:
            vars(user)[SUBSCRIPTION_ATTR] = subs.get(user.pk)
            vars(user)[VERIFIED_ATTR] = user.pk in verified


CREDENTIAL_COLUMNS = ("login", "created_at", "last_used_at", "revoked_at")


class ProxyCredentialInline(admin.TabularInline):
    model = ProxyCredential
    extra = 0
    can_delete = False
    show_change_link = True
    fields = CREDENTIAL_COLUMNS
    readonly_fields = CREDENTIAL_COLUMNS
    verbose_name_plural = "proxy credentials (issue, rotate and revoke under Proxy credentials)"

    def has_add_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Issuing goes through credential_issue, which shows the secret once.
        return False


@admin.register(User)
class UserAdmin(AuditedActionsMixin, DjangoUserAdmin):
    list_display = ["person", "plan_name", "plan_usage", "plan_expires"]
    list_display_links = ["person"]
    list_filter = [SubscriptionStateFilter, "is_active", "is_staff", "date_joined"]
    search_fields = ["username", "email"]
    action_form = SubscriptionActionForm
    # The user page offers the same actions as buttons.
    actions = [*USER_PAGE_ACTIONS, "mark_email_verified"]
    readonly_fields = [
        "current_subscription_summary",
        "quota_grants",
        "usage_chart",
        "email_verified",
        "last_login",
        "date_joined",
    ]
    fieldsets = (
        (
            "Plan and usage",
            {"fields": ["current_subscription_summary", "quota_grants", "usage_chart"]},
        ),
        *(DjangoUserAdmin.fieldsets or ()),
        ("E-mail verification", {"fields": ["email_verified"]}),
    )
    inlines = [ProxyCredentialInline]
    change_form_template = "admin/accounts/user/change_form.html"
    change_list_template = "admin/accounts/user/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="accounts_user_export",
            ),
            path(
                "<path:object_id>/act/<str:action>/",
                self.admin_site.admin_view(self.user_action_view),
                name="accounts_user_act",
            ),
        ]
        return [*own, *super().get_urls()]

    def save_model(
        self, request: HttpRequest, obj: User, form: forms.ModelForm[User], change: bool
    ) -> None:
        # Unticking "active" must end proxy access too, as the Deactivate action does.
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        super().save_model(request, obj, form, change)
        if deactivating:
            services.user_deactivate(user=obj, by=acting_operator(request))

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete_account(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.user_delete_account(user=user)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return UserChangeList

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {"action_plans": plan_selectors.plan_list(), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def user_action_view(
        self, request: HttpRequest, object_id: str, action: str
    ) -> HttpResponseBase:
        """One of the list's actions on this user, from the buttons of the user page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        user = self.get_object(request, unquote(object_id))
        if user is None:
            self.message_user(request, f"There is no user with id “{object_id}”.", messages.ERROR)
            return redirect("admin:accounts_user_changelist")
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        page = reverse("admin:accounts_user_change", args=[user.pk])
        entry = self.get_actions(request).get(action) if action in USER_PAGE_ACTIONS else None
        if entry is None:
            self.message_user(request, f"There is no action “{action}”.", messages.ERROR)
            return redirect(page)
        response = entry[0](self, request, self.get_queryset(request).filter(pk=user.pk))
        if isinstance(response, TemplateResponse):
            response.context_data = {**(response.context_data or {}), "cancel_url": page}
            return response
        if isinstance(response, HttpResponseBase):
            return response
        return redirect(page)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The list as filtered and searched on screen, with usage, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        users = changelist.get_queryset(request)
        return csv_response("users-with-usage.csv", USER_USAGE_HEADER, user_usage_rows(users))

    @staticmethod
    def _sub(obj: User) -> Subscription | None:
        cached = vars(obj)
        if SUBSCRIPTION_ATTR not in cached:
            cached[SUBSCRIPTION_ATTR] = plan_selectors.subscription_get_current(user_id=obj.pk)
        sub: Subscription | None = cached[SUBSCRIPTION_ATTR]
        return sub

    @admin.display(description="e-mail verified", boolean=True)
    def email_verified(self, obj: User) -> bool:
        cached = vars(obj)
        if VERIFIED_ATTR not in cached:
            cached[VERIFIED_ATTR] = selectors.user_email_verified(user_id=obj.pk)
        verified: bool = cached[VERIFIED_ATTR]
        return verified

    @admin.action(description="Mark the e-mail address verified")
    def mark_email_verified(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        marked = 0
        for user in queryset.exclude(email=""):
            if services.email_mark_verified(user=user):
                marked += 1
                self.log_change(request, user, "Marked the e-mail address verified.")
        self.message_user(request, f"Marked {marked} e-mail address(es) verified.")

    @admin.display(description="user", ordering="email")
    def person(self, obj: User) -> SafeString:
        """The e-mail, the username under it unless it is the same (portal signups), and
        marks on inactive users and unverified addresses."""
        name = obj.email or obj.username
        other = "" if obj.username.lower() == name.lower() else obj.username
        marks = [
            m
            for m, on in (
                ("inactive", not obj.is_active),
                ("unverified", not self.email_verified(obj)),
            )
            if on
        ]
        return format_html(
            "{}{}{}",
            name,
            format_html('<br><span class="gp-muted">{}</span>', other) if other else "",
            format_html_join("", ' <span class="gp-inactive">{}</span>', ((m,) for m in marks)),
        )

    @admin.display(description="plan · status")
    def plan_name(self, obj: User) -> SafeString | str:
        sub = self._sub(obj)
        if sub is None:
            return "no plan"
        return format_html(
            '{}<br><span class="gp-muted">{}</span>', sub.plan.name, sub.get_status_display()
        )

    @admin.display(description="used / limit")
    def plan_usage(self, obj: User) -> str:
        return subscription_usage_bar(self._sub(obj))

    @admin.display(description="expires")
    def plan_expires(self, obj: User) -> str:
        sub = self._sub(obj)
        if sub is None:
            return "—"
        return local_time(sub.expires_at) if sub.expires_at else "never"

    @admin.display(description="current subscription")
    def current_subscription_summary(self, obj: User) -> SafeString | str:
        if obj.pk is None:
            return "—"
        sub = self._sub(obj)
        if sub is None:
            return "No plan. Assign one with the buttons above."
        return format_html(
            '<div class="subscription-summary" style="max-width:520px">'
            '<p style="margin:0 0 .4em"><strong style="font-size:1.1em">{}</strong> · {} · '
            'expires {} · <a href="{}">subscription and history</a></p>{}'
            '<p style="margin:.4em 0 0">up {} · down {}</p></div>',
            sub.plan.name,
            sub.get_status_display(),
            self.plan_expires(obj),
            reverse("admin:plans_subscription_change", args=[sub.pk]),
            subscription_usage_bar(sub),
            human_bytes(sub.bytes_up),
            human_bytes(sub.bytes_down),
        )

    @admin.display(description="quota grants held by proxies")
    def quota_grants(self, obj: User) -> SafeString | str:
        """What each proxy instance holds of the user's quota (the grant ledger)."""
        if obj.pk is None:
            return "—"
        rows = plan_selectors.grants_held(user_id=obj.pk)
        if not rows:
            return "None: no proxy has asked for this user's quota."
        now = timezone.now()
        return format_html(
            '<table class="gp-grants"><thead><tr><th>proxy instance</th><th>held</th>'
            "<th>until</th><th>granted in all</th><th>returned</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        r.instance_id,
                        human_bytes(r.held_bytes)
                        if r.expires_at and r.expires_at > now
                        else "nothing (expired)",
                        local_time(r.expires_at) if r.expires_at else "—",
                        human_bytes(r.granted_bytes),
                        human_bytes(r.returned_bytes),
                    )
                    for r in rows
                ),
            ),
        )

    @admin.display(description="daily usage")
    def usage_chart(self, obj: User) -> SafeString | str:
        if obj.pk is None:
            return "—"
        days = settings.PORTAL_USAGE_CHART_DAYS
        series = plan_selectors.usage_daily_series(user_id=obj.pk, days=days)
        return format_html(
            '<div style="width:720px;max-width:100%">{}</div>',
            daily_usage_svg(
                series, chart_id=f"user-{obj.pk}-usage", title=f"{obj} — last {days} days"
            ),
        )

    def _current_subscriptions(
        self, request: HttpRequest, users: list[User]
    ) -> list[tuple[User, Subscription]]:
        """The users' current subscriptions (one plans query); users without one are named."""
        subs = plan_selectors.subscriptions_current_by_user(user_ids=[u.pk for u in users])
        missing = [u.username for u in users if u.pk not in subs]
        if missing:
            self.message_user(
                request, f"Skipped (no plan): {', '.join(missing)}.", messages.WARNING
            )
        return [(u, subs[u.pk]) for u in users if u.pk in subs]

    @admin.action(description="Assign the selected plan")
    def assign_plan(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        plan, by = self.read_input(request, chosen_plan), acting_operator(request)
        if plan is None:
            return None
        users = list(queryset)
        replaced = plan_selectors.subscriptions_current_by_user(user_ids=[u.pk for u in users])
        confirmation = Confirmation(
            title=f"Assign {plan.name}?",
            question=f"{len(replaced)} of these users have a current plan: {plan.name} "
            "replaces it and their usage starts again at zero.",
            button=f"Yes, assign {plan.name}",
        )
        if replaced and (page := self.confirm(request, users, confirmation)):
            return page
        self.run_each(
            request,
            users,
            lambda user: plan_services.plan_assign(user_id=user.pk, plan=plan, by=by),
            log=f"Assigned the {plan.name} plan.",
            done=f"Assigned {plan.name} to {{count}} user(s).",
        )
        return None

    @admin.action(description="Extend the subscription by N days")
    def extend_subscription(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        days, by = self.read_input(request, chosen_days), acting_operator(request)
        if days is not None:
            self.run_each(
                request,
                self._current_subscriptions(request, list(queryset)),
                lambda pair: plan_services.subscription_extend(
                    subscription=pair[1], days=days, by=by
                ),
                row=lambda pair: pair[0],
                log=f"Extended the subscription by {days} day(s).",
                done=f"Extended {{count}} subscription(s) by {days} day(s).",
            )

    @admin.action(description="Top up this period's traffic")
    def top_up(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        amount, by = self.read_input(request, chosen_top_up), acting_operator(request)
        if amount is not None:
            self.run_each(
                request,
                self._current_subscriptions(request, list(queryset)),
                lambda pair: plan_services.subscription_top_up(
                    subscription=pair[1], bytes_=amount, by=by
                ),
                row=lambda pair: pair[0],
                log=f"Topped up this period by {human_bytes(amount)}.",
                done=f"Topped up {{count}} subscription(s) by {human_bytes(amount)}.",
            )

    @admin.action(description="Reset traffic usage to zero")
    def reset_usage(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        users, by = list(queryset), acting_operator(request)
        if page := self.confirm(request, users, RESET_USAGE):
            return page
        self.run_each(
            request,
            self._current_subscriptions(request, users),
            lambda pair: plan_services.subscription_reset_usage(subscription=pair[1], by=by),
            row=lambda pair: pair[0],
            log="Reset the traffic usage.",
            done="Reset the usage of {count} subscription(s).",
        )
        return None

    @admin.action(description="Revoke all proxy credentials")
    def revoke_credentials(
        self, request: HttpRequest, queryset: QuerySet[User]
    ) -> HttpResponse | None:
        users = list(queryset)
        if page := self.confirm(request, users, REVOKE_CREDENTIALS):
            return page
        revoked = {user: services.credential_revoke_all(user=user) for user in users}
        self.audit(request, [u for u, n in revoked.items() if n], "Revoked all proxy credentials.")
        self.message_user(request, f"Revoked {sum(revoked.values())} credential(s).")
        return None

    @admin.action(description="Deactivate (ends credentials and plan)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        users, by = list(queryset.filter(is_active=True)), acting_operator(request)
        if not users:
            self.message_user(request, "These users are already inactive.", messages.WARNING)
            return None
        if page := self.confirm(request, users, DEACTIVATE):
            return page
        self.run_each(
            request,
            users,
            lambda user: services.user_deactivate(user=user, by=by),
            log="Deactivated (credentials revoked, plan disabled).",
            done="Deactivated {count} user(s).",
        )
        return None


class CredentialIssueForm(forms.ModelForm):
    login = forms.CharField(
        required=False, help_text="Leave empty to generate one from the username."
    )

    class Meta:
        model = ProxyCredential
        fields = ["user", "login"]

    def clean_login(self) -> str:
        login = self.cleaned_data.get("login", "").strip()
        if login:
            login_validator(login)
            if selectors.credential_login_taken(login=login):
                raise ValidationError("This proxy login is already taken.")
        return login


@admin.register(ProxyCredential)
class ProxyCredentialAdmin(AuditedActionsMixin, admin.ModelAdmin):
    list_display = ["login", "user", "created", "last_used", "revoked"]
    created = time_column("created_at", "created", sortable=True)
    last_used = time_column("last_used_at", "last used", sortable=True)
    revoked = time_column("revoked_at", "revoked", sortable=True)
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["login", "user__username", "user__email"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    actions = ["revoke", "rotate"]

    def get_form(
        self,
        request: HttpRequest,
        obj: ProxyCredential | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[forms.ModelForm[ProxyCredential]]:
        if obj is None:
            kwargs["form"] = CredentialIssueForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(
        self, request: HttpRequest, obj: ProxyCredential | None = None
    ) -> list[str]:
        if obj is None:
            return []
        return ["user", "login", "created_at", "last_used_at", "revoked_at"]

    def get_fields(
        self, request: HttpRequest, obj: ProxyCredential | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ("user", "login")
        return ("user", *CREDENTIAL_COLUMNS)

    def save_model(
        self,
        request: HttpRequest,
        obj: ProxyCredential,
        form: forms.ModelForm[ProxyCredential],
        change: bool,
    ) -> None:
        if change:
            return
        issued = services.credential_issue(user=obj.user, login=form.cleaned_data.get("login"))
        obj.pk = issued.credential.pk
        obj.login = issued.credential.login
        self.message_user(
            request,
            f"Issued {issued.credential.login}. Secret (shown once): {issued.secret}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected credentials")
    def revoke(
        self, request: HttpRequest, queryset: QuerySet[ProxyCredential]
    ) -> HttpResponse | None:
        credentials = list(queryset.filter(revoked_at__isnull=True))
        if page := self.confirm(request, credentials, REVOKE_SELECTED):
            return page
        self.run_each(
            request,
            credentials,
            lambda credential: services.credential_revoke(credential=credential),
            log="Revoked.",
            done="Revoked {count} credential(s).",
        )
        return None

    @admin.action(description="Rotate secret (shown once)")
    def rotate(
        self, request: HttpRequest, queryset: QuerySet[ProxyCredential]
    ) -> HttpResponse | None:
        credentials = list(queryset.filter(revoked_at__isnull=True))
        if page := self.confirm(request, credentials, ROTATE_SELECTED):
            return page
        for credential in credentials:
            issued = services.credential_rotate(credential=credential)
            self.message_user(
                request,
                f"New secret for {credential.login} (shown once): {issued.secret}",
                messages.WARNING,
            )
        self.audit(request, credentials, "Rotated the secret.")
        return None
