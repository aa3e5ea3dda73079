"""Form fields that take sizes and speeds in the units people think in.

A number box and a unit menu (MB, GB… or Mbit/s, MB/s…) replace a raw integer, so an
operator types "50" + "GB" for a 50,000,000,000-byte limit and "100" + "Mbit/s" for a
12,500,000 bytes/s speed. The stored value stays the integer (bytes, bytes per second);
an existing value is shown in the largest unit that represents it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from .formatting import BYTE_INPUT_UNITS, SPEED_INPUT_UNITS

Units = Sequence[tuple[str, int]]


# An exact number in a small unit above this reads worse than a decimal in a large one.
READABLE_INTEGER = 10_000


def split_in_unit(value: int, units: Units) -> tuple[str, int]:
    """The number and unit factor that show `value`: a whole number in the largest unit
    that gives one (while it stays short), else a decimal in the largest unit that fits."""
    fitting = [factor for _, factor in units if factor <= value] or [units[-1][1]]
    for factor in fitting:
        if value % factor == 0 and value // factor < READABLE_INTEGER:
            return str(value // factor), factor
    largest = fitting[0]
    return format((Decimal(value) / largest).normalize(), "f"), largest


class UnitWidget(forms.MultiWidget):
    """A number input and a unit menu; the menu is named for screen readers."""

    template_name = "goproxy/widgets/unit_input.html"

    def __init__(self, units: Units, default_unit: int, attrs: dict[str, Any] | None = None):
        self.units = list(units)
        self.default_unit = default_unit
        number = forms.NumberInput(attrs={"step": "any", "min": "0", "class": "unit-number"})
        unit = forms.Select(
            choices=[(str(factor), label) for label, factor in self.units],
            attrs={"aria-label": "unit", "class": "unit-choice"},
        )
        super().__init__([number, unit], attrs)

    def decompress(self, value: Any) -> list[Any]:
        if value in (None, ""):
            return [None, str(self.default_unit)]
        number, factor = split_in_unit(int(value), self.units)
        return [number, str(factor)]


class UnitField(forms.MultiValueField):
    """An integer quantity entered as number times a unit; empty means None (unlimited)."""

    def __init__(
        self,
        *,
        units: Units,
        default_unit: int,
        quantity: str,
        min_value: int = 1,
        **kwargs: Any,
    ) -> None:
        self.units = list(units)
        self.quantity = quantity
        self.min_value = min_value
        # Both parts are read as text; compress() says what is wrong with either.
        fields = (forms.CharField(required=False), forms.CharField(required=False))
        kwargs.setdefault("required", False)
        super().__init__(
            fields,
            require_all_fields=False,
            widget=UnitWidget(self.units, default_unit),
            **kwargs,
        )

    def compress(self, data_list: list[Any]) -> int | None:
        if not data_list or data_list[0] in (None, ""):
            return None
        raw, factor = data_list[0], data_list[1] if len(data_list) > 1 else None
        try:
            number = Decimal(str(raw).strip().replace(",", "."))
        except InvalidOperation:
            raise ValidationError(
                f"Enter the {self.quantity} as a number, e.g. 50.", code="invalid"
            ) from None
        if not number.is_finite():
            raise ValidationError(f"Enter the {self.quantity} as a number.", code="invalid")
        factors = {str(f): f for _, f in self.units}
        if str(factor) not in factors:
            raise ValidationError(f"Choose a unit for the {self.quantity}.", code="invalid")
        value = int((number * factors[str(factor)]).to_integral_value())
        if value < self.min_value:
            raise ValidationError(f"The {self.quantity} must be more than zero.", code="min_value")
        return value


def byte_size_field(*, label: str, help_text: str = "", **kwargs: Any) -> UnitField:
    """Bytes entered in kB, MB, GB or TB (decimal), MB preselected for new values."""
    return UnitField(
        units=BYTE_INPUT_UNITS,
        default_unit=10**6,
        quantity=label.lower(),
        label=label,
        help_text=help_text,
        **kwargs,
    )


def speed_field(*, label: str, help_text: str = "", **kwargs: Any) -> UnitField:
    """Bytes per second entered in Mbit/s, MB/s, Gbit/s…, Mbit/s preselected."""
    return UnitField(
        units=SPEED_INPUT_UNITS,
        default_unit=125_000,
        quantity=label.lower(),
        label=label,
        help_text=help_text,
        **kwargs,
    )
