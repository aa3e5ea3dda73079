"""Admin actions that ask before they destroy and leave a trace when they run.

`AuditedActionsMixin` gives a ModelAdmin the helpers of its actions:

- `read_input(request, parse)` runs a parser of the action's inputs and reports its
  ActionInputError as an error message (None then: the action stops);
- `confirm(request, rows, confirmation)` answers the first POST with a page that lists
  the rows (as Django's own delete confirmation does) and carries every posted field
  along; it returns None once the operator has confirmed;
- `run_each(request, targets, change, ...)` calls a service per target, reports each
  refusal (ValidationError) by row, and `audit`s the rows it changed;
- `audit(request, rows, message)` writes one admin LogEntry per row, in one insert, with
  the operator as its user, so bulk actions appear in "Recent actions" and in each
  object's history like any edit made through a form.

An action reads its inputs first (a missing plan or number is reported at once, not
after a confirmation), then confirms, then runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

CONFIRM_FIELD = "_confirmed"
# Rows listed by name on a confirmation page; the rest are counted.
CONFIRM_LIST_LIMIT = 50

T = TypeVar("T")


class ActionInputError(Exception):
    """An action's input is missing or wrong; the message says which and why."""


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation page asks: its title, the consequence, the button's label."""

    title: str
    question: str
    button: str


class AuditedActionsMixin(admin.ModelAdmin):
    """Confirmation pages and admin-log entries for actions (see the module docstring)."""

    confirm_template = "admin/goproxy/confirm_action.html"

    def read_input(self, request: HttpRequest, parse: Callable[[HttpRequest], T]) -> T | None:
        try:
            return parse(request)
        except ActionInputError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None

    def run_each(
        self,
        request: HttpRequest,
        targets: Sequence[T],
        change: Callable[[T], object],
        *,
        log: str,
        done: str,
        row: Callable[[T], Model] | None = None,
    ) -> None:
        """`change` each target; `row` gives the object a target is logged on (the
        target itself by default); `done` is the summary, with {count}."""
        changed: list[Model] = []
        for target in targets:
            obj: Any = row(target) if row else target
            try:
                change(target)
            except ValidationError as exc:
                self.message_user(request, f"{obj}: {' '.join(exc.messages)}", messages.WARNING)
            else:
                changed.append(obj)
        self.audit(request, changed, log)
        self.message_user(request, done.format(count=len(changed)))

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
        confirmation: Confirmation,
        *,
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
            "title": confirmation.title,
            "subtitle": None,
            "question": confirmation.question,
            "button": confirmation.button,
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
