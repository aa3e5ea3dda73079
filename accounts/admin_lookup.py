"""Plans-side admin pages that speak people: each row's user by e-mail, linked to the
user's page, and search by e-mail, username or id.

Plans rows reference users by `user_id` on another database, so a changelist can
neither join nor order by e-mail. `UserLookupMixin` fetches the users of a whole page
in one accounts-DB query once the page's rows are known (`users_by_id`), and does the
same for the single row of a change, delete or history page. Any ModelAdmin whose model
has a `user_id` column can use it; billing's admin does it like this:

    @admin.register(Order)
    class OrderAdmin(UserLookupMixin, admin.ModelAdmin):
        list_display = ["user_link", "plan", "amount", "status"]
        search_fields = ["=reference"]  # its own fields; e-mail/username/id are added

`user_link` is the column; `user_of(row)` gives the UserSummary (None for a deleted
user) to other columns, and a row's `__str__` can name the person with
`goproxy_site.formatting.user_label(self)`. Actions that go through several rows call
`self.with_users(queryset)` to get them as a list with their users attached.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import lookup_spawns_duplicates
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal

from goproxy_site.formatting import USER_LABEL_ATTR

from .selectors import USER_SEARCH_LIMIT, UserSummary, user_ids_matching, users_by_id

# The attribute holding a row's UserSummary (or None: the user no longer exists).
USER_ATTR = "_user_summary"


def attach_users(rows: Iterable[Any]) -> None:
    """Look up the users of `rows` in one query and leave each on its row."""
    rows = list(rows)
    users = users_by_id(user_ids={row.user_id for row in rows})
    for row in rows:
        user = users.get(row.user_id)
        vars(row)[USER_ATTR] = user
        vars(row)[USER_LABEL_ATTR] = user.label if user else ""


def user_of(row: Any) -> UserSummary | None:
    """The row's user; looked up on its own only for a row no page has batched."""
    if USER_ATTR not in vars(row):
        attach_users([row])
    user: UserSummary | None = vars(row)[USER_ATTR]
    return user


def user_link_html(user_id: int, user: UserSummary | None) -> SafeString:
    """The e-mail linked to the user's admin page (or a note that the user is gone)."""
    if user is None:
        return format_html('<span title="no such user">user {} (deleted)</span>', user_id)
    return format_html(
        '<a href="{}" title="{}">{}</a>',
        reverse("admin:accounts_user_change", args=[user.id]),
        user.username,
        user.label,
    )


class ParentUserFormSet(BaseInlineFormSet):
    """Inline rows of the parent's user (a subscription's history): they take the user
    the parent page looked up, with no query of their own."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_rows_with_user"):
            rows = list(super().get_queryset())
            parent = vars(self.instance)
            for row in rows:
                for attr in (USER_ATTR, USER_LABEL_ATTR):
                    if attr in parent:
                        vars(row)[attr] = parent[attr]
            self._rows_with_user = rows
        return self._rows_with_user


class UserLookupChangeList(ChangeList):
    """A changelist that fetches the users of the shown page in one query."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        attach_users(self.result_list)


def _own_lookup(field: str) -> str:
    # The prefixes of ModelAdmin.search_fields: ^ starts with, = is exactly, else contains.
    if field.startswith("^"):
        return f"{field[1:]}__istartswith"
    if field.startswith("="):
        return f"{field[1:]}__iexact"
    return f"{field}__icontains"


class UserLookupMixin(admin.ModelAdmin):
    """For ModelAdmins of models with a `user_id` column (see the module docstring)."""

    search_help_text = "Search by e-mail, username or user id."
    user_search_limit = USER_SEARCH_LIMIT

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return UserLookupChangeList

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            attach_users([obj])
        return obj

    def with_users(self, queryset: QuerySet[Any]) -> list[Any]:
        """The rows of `queryset` with their users attached (one accounts query)."""
        rows = list(queryset)
        attach_users(rows)
        return rows

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # Never empty, so the changelist always shows its search box.
        return [*super().get_search_fields(request)] or ["user_id"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Each word must match the user (e-mail or username contains it, or it is the
        user id) or one of the admin's own `search_fields`, as Django's search does."""
        own = [_own_lookup(str(f)) for f in self.search_fields]
        may_have_duplicates = any(lookup_spawns_duplicates(self.opts, lookup) for lookup in own)
        query = Q()
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            ids = user_ids_matching(term=bit, limit=self.user_search_limit)
            if len(ids) > self.user_search_limit:
                ids = ids[: self.user_search_limit]
                self.message_user(
                    request,
                    f"“{bit}” matches more than {self.user_search_limit} users; only the "
                    "first of them are searched. Narrow the search.",
                    messages.WARNING,
                )
            term = Q(user_id__in=ids)
            if bit.isdigit():
                term |= Q(user_id=int(bit))
            for lookup in own:
                term |= Q(**{lookup: bit})
            query &= term
        if not query:
            return queryset, False
        return queryset.filter(query), may_have_duplicates

    @admin.display(description="user", ordering="user_id")
    def user_link(self, obj: Any) -> SafeString:
        return user_link_html(obj.user_id, user_of(obj))
