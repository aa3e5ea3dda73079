"""The inputs of the admin's subscription actions (plan, days, top-up), shared by the
user list, the user page and the subscription list.

The fields are lenient on purpose: Django validates a whole action form before it runs
an action and answers an invalid one with "No action selected", so each action reads
its own inputs with the parsers below, which say what is wrong.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from goproxy_site.admin_actions import ActionInputError
from goproxy_site.unit_fields import UnitField

from .history import operator_by
from .models import Plan
from .selectors import plan_list

MAX_EXTEND_DAYS = 3650
MAX_TOP_UP_BYTES = 10**15
TOP_UP_UNITS = (("MB", 10**6), ("GB", 10**9), ("TB", 10**12))


class SubscriptionActionForm(ActionForm):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.all(), required=False, label="Plan", empty_label="(plan)"
    )
    days = forms.CharField(
        required=False,
        label="Days",
        widget=forms.NumberInput(attrs={"min": 1, "max": MAX_EXTEND_DAYS, "style": "width:5em"}),
    )
    amount = forms.CharField(
        required=False,
        label="Top-up",
        widget=forms.NumberInput(attrs={"min": 0, "step": "any", "style": "width:6em"}),
    )
    amount_unit = forms.ChoiceField(
        required=False,
        label="Top-up unit",
        choices=[(str(factor), label) for label, factor in TOP_UP_UNITS],
    )


def acting_operator(request: HttpRequest) -> str:
    """The operator behind an action, as the subscription's history names them."""
    return operator_by(request.user.get_username())


def chosen_plan(request: HttpRequest) -> Plan:
    chosen = request.POST.get("plan", "").strip()
    plan = plan_list().filter(pk=chosen).first() if chosen.isdigit() else None
    if plan is None:
        raise ActionInputError("Choose a plan.")
    return plan


def chosen_days(request: HttpRequest) -> int:
    raw = request.POST.get("days", "").strip()
    if not raw:
        raise ActionInputError("Enter the number of days to extend by.")
    try:
        days: int = forms.IntegerField(min_value=1, max_value=MAX_EXTEND_DAYS).clean(raw)
    except ValidationError as exc:
        raise ActionInputError(f"Days: {' '.join(exc.messages)}") from exc
    return days


def chosen_top_up(request: HttpRequest) -> int:
    """The top-up in bytes, from a number and a unit (MB preselected)."""
    raw = request.POST.get("amount", "").strip()
    if not raw:
        raise ActionInputError("Enter the traffic to top up by, e.g. 500 MB or 2 GB.")
    unit = request.POST.get("amount_unit") or str(10**6)
    field = UnitField(units=TOP_UP_UNITS, default_unit=10**6, quantity="top-up")
    try:
        value = field.clean([raw, unit])
    except ValidationError as exc:
        raise ActionInputError(f"Top-up: {' '.join(exc.messages)}") from exc
    if value is None or value > MAX_TOP_UP_BYTES:
        raise ActionInputError("Top-up: enter at most 1000 TB.")
    return value
