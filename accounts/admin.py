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
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from goproxy_site.formatting import human_bytes
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.charts import daily_usage_svg, subscription_usage_bar
from plans.models import Plan, Subscription, SubscriptionStatus

from . import selectors, services
from .models import ProxyCredential, User, login_validator

MAX_EXTEND_DAYS = 3650


class UserActionForm(ActionForm):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.all(), required=False, label="Plan", empty_label="(plan)"
    )
    # A CharField: an invalid action form makes the changelist say "No action selected",
    # so the number is checked by the action, which can say what is wrong.
    days = forms.CharField(
        required=False,
        label="Days",
        widget=forms.NumberInput(attrs={"min": 1, "max": MAX_EXTEND_DAYS, "style": "width:5em"}),
    )


def action_value(form_class: type[forms.Form], request: HttpRequest, name: str) -> Any:
    """Clean one extra field of an admin action form.

    The whole ActionForm cannot be validated outside the changelist, whose view fills
    in the choices of its `action` field.
    """
    return form_class.base_fields[name].clean(request.POST.get(name) or None)


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
class UserAdmin(DjangoUserAdmin):
    list_display = [
        "username",
        "email",
        "email_verified",
        "is_active",
        "plan_name",
        "plan_status",
        "plan_usage",
        "plan_expires",
    ]
    list_filter = [SubscriptionStateFilter, "is_active", "is_staff", "date_joined"]
    search_fields = ["username", "email"]
    action_form = UserActionForm
    actions = [
        "assign_plan",
        "extend_subscription",
        "reset_usage",
        "revoke_credentials",
        "deactivate",
        "mark_email_verified",
    ]
    readonly_fields = [
        "current_subscription_summary",
        "usage_chart",
        "email_verified",
        "last_login",
        "date_joined",
    ]
    fieldsets = (
        ("Plan and usage", {"fields": ["current_subscription_summary", "usage_chart"]}),
        *(DjangoUserAdmin.fieldsets or ()),
        ("E-mail verification", {"fields": ["email_verified"]}),
    )
    inlines = [ProxyCredentialInline]

    def save_model(
        self, request: HttpRequest, obj: User, form: forms.ModelForm[User], change: bool
    ) -> None:
        # Unticking "active" must end proxy access too, as the Deactivate action does.
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        super().save_model(request, obj, form, change)
        if deactivating:
            services.user_deactivate(user=obj)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete_account(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.user_delete_account(user=user)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return UserChangeList

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

    @admin.display(description="plan")
    def plan_name(self, obj: User) -> str:
        sub = self._sub(obj)
        return sub.plan.name if sub else "—"

    @admin.display(description="status")
    def plan_status(self, obj: User) -> str:
        sub = self._sub(obj)
        return sub.get_status_display() if sub else "no plan"

    @admin.display(description="used / limit")
    def plan_usage(self, obj: User) -> str:
        return subscription_usage_bar(self._sub(obj))

    @admin.display(description="expires")
    def plan_expires(self, obj: User) -> str:
        sub = self._sub(obj)
        if sub is None:
            return "—"
        return f"{sub.expires_at:%Y-%m-%d %H:%M}" if sub.expires_at else "never"

    @admin.display(description="current subscription")
    def current_subscription_summary(self, obj: User) -> SafeString | str:
        if obj.pk is None:
            return "—"
        sub = self._sub(obj)
        if sub is None:
            return "No plan. Use the “Assign the selected plan” action on the user list."
        return format_html(
            '<div class="subscription-summary" style="max-width:520px">'
            '<p style="margin:0 0 .4em"><strong style="font-size:1.1em">{}</strong> · {} · '
            'expires {} · <a href="{}">subscription #{}</a></p>{}'
            '<p style="margin:.4em 0 0">up {} · down {}</p></div>',
            sub.plan.name,
            sub.get_status_display(),
            self.plan_expires(obj),
            reverse("admin:plans_subscription_change", args=[sub.pk]),
            sub.pk,
            subscription_usage_bar(sub),
            human_bytes(sub.bytes_up),
            human_bytes(sub.bytes_down),
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

    @admin.action(description="Assign the selected plan")
    def assign_plan(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        try:
            plan = action_value(UserActionForm, request, "plan")
        except ValidationError:
            plan = None
        if plan is None:
            self.message_user(request, "Choose a plan to assign.", messages.ERROR)
            return
        users = list(queryset)
        for user in users:
            plan_services.plan_assign(user_id=user.pk, plan=plan)
        self.message_user(request, f"Assigned {plan.name} to {len(users)} user(s).")

    def _current_subscriptions(
        self, request: HttpRequest, queryset: QuerySet[User]
    ) -> list[Subscription]:
        users = list(queryset)
        subs = plan_selectors.subscriptions_current_by_user(user_ids=[u.pk for u in users])
        missing = [u.username for u in users if u.pk not in subs]
        if missing:
            self.message_user(
                request, f"Skipped (no plan): {', '.join(missing)}.", messages.WARNING
            )
        return list(subs.values())

    @admin.action(description="Extend the subscription by N days")
    def extend_subscription(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        raw = request.POST.get("days", "").strip()
        if not raw:
            self.message_user(request, "Enter the number of days to extend by.", messages.ERROR)
            return
        try:
            days = forms.IntegerField(min_value=1, max_value=MAX_EXTEND_DAYS).clean(raw)
        except ValidationError as exc:
            self.message_user(request, f"Days: {' '.join(exc.messages)}", messages.ERROR)
            return
        done = 0
        for sub in self._current_subscriptions(request, queryset):
            try:
                plan_services.subscription_extend(subscription=sub, days=days)
                done += 1
            except ValidationError as exc:
                self.message_user(
                    request, f"User {sub.user_id}: {' '.join(exc.messages)}", messages.WARNING
                )
        self.message_user(request, f"Extended {done} subscription(s) by {days} day(s).")

    @admin.action(description="Reset traffic usage to zero")
    def reset_usage(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        subs = self._current_subscriptions(request, queryset)
        for sub in subs:
            plan_services.subscription_reset_usage(subscription=sub)
        self.message_user(request, f"Reset the usage of {len(subs)} subscription(s).")

    @admin.action(description="Revoke all proxy credentials")
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        total = sum(services.credential_revoke_all(user=user) for user in queryset)
        self.message_user(request, f"Revoked {total} credential(s).")

    @admin.action(description="Mark the e-mail address verified")
    def mark_email_verified(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        marked = sum(services.email_mark_verified(user=user) for user in queryset.exclude(email=""))
        self.message_user(request, f"Marked {marked} e-mail address(es) verified.")

    @admin.action(description="Deactivate (revoke credentials, disable plan)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        count = 0
        for user in queryset.filter(is_active=True):
            services.user_deactivate(user=user)
            count += 1
        self.message_user(request, f"Deactivated {count} user(s).")


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
class ProxyCredentialAdmin(admin.ModelAdmin):
    list_display = ["login", "user", "created_at", "last_used_at", "revoked_at"]
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
    def revoke(self, request: HttpRequest, queryset: QuerySet[ProxyCredential]) -> None:
        for credential in queryset:
            services.credential_revoke(credential=credential)
        self.message_user(request, f"Revoked {queryset.count()} credential(s).")

    @admin.action(description="Rotate secret (shown once)")
    def rotate(self, request: HttpRequest, queryset: QuerySet[ProxyCredential]) -> None:
        for credential in queryset.filter(revoked_at__isnull=True):
            issued = services.credential_rotate(credential=credential)
            self.message_user(
                request,
                f"New secret for {credential.login} (shown once): {issued.secret}",
                messages.WARNING,
            )
