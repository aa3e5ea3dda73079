"""Admin actions that ask before they destroy and leave a trace when they run.

`AuditedActionsMixin` gives a ModelAdmin two helpers for its actions:

- `confirm(request, rows, ...)` answers the first POST with a confirmation page that
  lists the rows (as Django's own delete confirmation does) and carries every posted
  field along; it returns None once the operator has confirmed, and the action runs.
- `audit(request, rows, message)` writes one admin LogEntry per row, in one insert, with
  the operator as its user, so bulk actions appear in "Recent actions" and in each
  object's history like any edit made through a form.

An action calls `confirm` after it has checked its input (a missing plan or number is
reported at once, not after a confirmation), then the service, then `audit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

CONFIRM_FIELD = "_confirmed"
# Rows listed by name on a confirmation page; the rest are counted.
CONFIRM_LIST_LIMIT = 50


class AuditedActionsMixin(admin.ModelAdmin):
    """Confirmation pages and admin-log entries for actions (see the module docstring)."""

    confirm_template = "admin/goproxy/confirm_action.html"

    def audit(self, request: HttpRequest, rows: Sequence[Model], message: str) -> None:
        if rows and request.user.pk is not None:
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=list(rows),
                action_flag=CHANGE,
                change_message=message,
            )

    def confirm(
        self,
        request: HttpRequest,
        rows: Sequence[Model],
        *,
        title: str,
        question: str,
        button: str,
        cancel_url: str | None = None,
    ) -> TemplateResponse | None:
        """The confirmation page for `rows`, or None when this POST confirms it."""
        if request.POST.get(CONFIRM_FIELD) == "yes":
            return None
        opts = self.opts
        carried = [
            (name, value)
            for name, values in request.POST.lists()
            if name not in ("csrfmiddlewaretoken", CONFIRM_FIELD)
            for value in values
        ]
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "question": question,
            "button": button,
            "opts": opts,
            "app_label": opts.app_label,
            "rows": [str(row) for row in rows[:CONFIRM_LIST_LIMIT]],
            "more": max(len(rows) - CONFIRM_LIST_LIMIT, 0),
            "count": len(rows),
            "noun": opts.verbose_name if len(rows) == 1 else opts.verbose_name_plural,
            "carried": carried,
            "confirm_field": CONFIRM_FIELD,
            "action_url": request.get_full_path(),
            "cancel_url": cancel_url
            or reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.confirm_template, context)
