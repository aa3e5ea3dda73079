"""Operator admin for users and proxy credentials.

A user's subscription lives on the plans DB: the changelist fetches the current
subscriptions of the shown page in one query (no cross-DB join), and filters turn a
plans-DB question into a list of user ids.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from goproxy_site.formatting import human_bytes
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.models import Plan, Subscription, SubscriptionStatus

from . import services
from .models import ProxyCredential, User, login_validator

NEAR_LIMIT_RATIO = 0.8


class UserActionForm(ActionForm):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.all(), required=False, label="Plan", empty_label="(plan)"
    )


class SubscriptionStateFilter(admin.SimpleListFilter):
    title = "subscription"
    parameter_name = "subscription"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
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
            ids = plan_selectors.user_ids_near_limit(ratio=NEAR_LIMIT_RATIO)
        elif value == "expiring":
            ids = plan_selectors.user_ids_expiring(within=timezone.timedelta(days=3))
        else:
            ids = plan_selectors.user_ids_with_status(statuses=[value])
        return queryset.filter(pk__in=ids)


class UserChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        subs = plan_selectors.subscriptions_current_by_user(
            user_ids=[u.pk for u in self.result_list]
        )
        for user in self.result_list:
            user.current_subscription = subs.get(user.pk)


def usage_bar(sub: Subscription | None) -> str:
    if sub is None:
        return "—"
    used = human_bytes(sub.bytes_used)
    limit = human_bytes(sub.traffic_limit_bytes)
    ratio = sub.usage_ratio
    if ratio is None:
        return format_html("{} / {}", used, limit)
    colour = "#c0392b" if ratio >= 1 else "#e67e22" if ratio >= NEAR_LIMIT_RATIO else "#27ae60"
    return format_html(
        '<div style="width:120px;background:#eee;border-radius:3px" title="{}%">'
        '<div style="width:{}%;background:{};height:8px;border-radius:3px"></div></div>'
        "<small>{} / {}</small>",
        round(ratio * 100),
        round(ratio * 100),
        colour,
        used,
        limit,
    )


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = [
        "username",
        "email",
        "is_active",
        "is_staff",
        "plan_name",
        "plan_status",
        "plan_usage",
        "plan_expires",
    ]
    list_filter = [SubscriptionStateFilter, "is_active", "is_staff", "date_joined"]
    search_fields = ["username", "email"]
    action_form = UserActionForm
    actions = ["assign_plan", "revoke_credentials", "deactivate"]
    readonly_fields = ["current_subscription_summary", "last_login", "date_joined"]
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Plan", {"fields": ["current_subscription_summary"]}),
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return UserChangeList

    @staticmethod
    def _sub(obj: User) -> Subscription | None:
        if not hasattr(obj, "current_subscription"):
            obj.current_subscription = plan_selectors.subscription_get_current(user_id=obj.pk)
        return obj.current_subscription

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
        return usage_bar(self._sub(obj))

    @admin.display(description="expires")
    def plan_expires(self, obj: User) -> str:
        sub = self._sub(obj)
        if sub is None:
            return "—"
        return f"{sub.expires_at:%Y-%m-%d %H:%M}" if sub.expires_at else "never"

    @admin.display(description="current subscription")
    def current_subscription_summary(self, obj: User) -> str:
        sub = self._sub(obj)
        if sub is None:
            return "No plan"
        return format_html(
            "{} — {} — {} — expires {}",
            sub.plan.name,
            sub.get_status_display(),
            usage_bar(sub),
            self.plan_expires(obj),
        )

    @admin.action(description="Assign the selected plan")
    def assign_plan(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        plan_id = request.POST.get("plan", "")
        plan = Plan.objects.filter(pk=plan_id).first() if plan_id.isdigit() else None
        if plan is None:
            self.message_user(request, "Choose a plan to assign.", messages.ERROR)
            return
        for user in queryset:
            plan_services.plan_assign(user_id=user.pk, plan=plan)
        self.message_user(request, f"Assigned {plan.name} to {queryset.count()} user(s).")

    @admin.action(description="Revoke all proxy credentials")
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        total = sum(services.credential_revoke_all(user=user) for user in queryset)
        self.message_user(request, f"Revoked {total} credential(s).")

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
            if ProxyCredential.objects.filter(login=login).exists():
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

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = CredentialIssueForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["user", "login", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["user", "login"]
        return ["user", "login", "created_at", "last_used_at", "revoked_at"]

    def save_model(
        self, request: HttpRequest, obj: ProxyCredential, form: Any, change: bool
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
