"""Sizes and speeds shown and entered in the units people use."""

from __future__ import annotations

from django import forms
from django.test import SimpleTestCase

from goproxy_site.csv_export import cell
from goproxy_site.formatting import human_bit_rate, human_bytes, human_speed
from goproxy_site.unit_fields import byte_size_field, speed_field


class Limits(forms.Form):
    traffic = byte_size_field(label="Traffic limit")
    speed = speed_field(label="Speed limit")


class FormattingTests(SimpleTestCase):
    def test_speeds_read_as_bit_rates_with_bytes_beside(self) -> None:
        self.assertEqual(human_speed(12_500_000), "100 Mbit/s (12.5 MB/s)")
        self.assertEqual(human_speed(1_250_000), "10 Mbit/s (1.2 MB/s)")
        self.assertEqual(human_speed(125_000_000), "1 Gbit/s (125.0 MB/s)")
        self.assertEqual(human_bit_rate(100), "800 bit/s")
        self.assertEqual(human_speed(None), "unlimited")
        self.assertEqual(human_bytes(50 * 10**9), "50.0 GB")


class UnitFieldTests(SimpleTestCase):
    def test_number_times_unit(self) -> None:
        form = Limits(
            {"traffic_0": "1.5", "traffic_1": "1000000000", "speed_0": "100", "speed_1": "125000"}
        )
        self.assertIs(form.is_valid(), True, form.errors)
        self.assertEqual(form.cleaned_data, {"traffic": 1_500_000_000, "speed": 12_500_000})

    def test_empty_is_unlimited(self) -> None:
        form = Limits({"traffic_0": "", "traffic_1": "1000000", "speed_0": "", "speed_1": "1"})
        self.assertIs(form.is_valid(), True)
        self.assertEqual(form.cleaned_data, {"traffic": None, "speed": None})

    def test_bad_input_is_explained(self) -> None:
        cases = {
            ("x", "1000000"): "Enter the traffic limit as a number, e.g. 50.",
            ("0", "1000000"): "The traffic limit must be more than zero.",
            ("5", "7"): "Choose a unit for the traffic limit.",
            ("inf", "1000000"): "Enter the traffic limit as a number.",
        }
        for (number, unit), message in cases.items():
            with self.subTest(number=number, unit=unit):
                form = Limits({"traffic_0": number, "traffic_1": unit})
                self.assertIs(form.is_valid(), False)
                self.assertEqual(form.errors["traffic"], [message])

    def test_existing_values_show_in_the_largest_exact_unit(self) -> None:
        widget = byte_size_field(label="x").widget
        self.assertEqual(widget.decompress(50 * 10**9), ["50", str(10**9)])
        self.assertEqual(widget.decompress(1_234_567), ["1.234567", str(10**6)])
        self.assertEqual(widget.decompress(None), [None, str(10**6)])
        speed = speed_field(label="y").widget
        self.assertEqual(speed.decompress(12_500_000), ["100", "125000"])
        self.assertEqual(speed.decompress(2_000_000), ["2", str(10**6)])
        rendered = Limits(initial={"traffic": 2 * 10**12}).as_p()
        self.assertIn('aria-label="unit"', rendered)
        self.assertIn('<option value="1000000000000" selected>TB</option>', rendered)


class CsvCellTests(SimpleTestCase):
    def test_formulas_become_text_and_numbers_stay_numbers(self) -> None:
        for value in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx"):
            with self.subTest(value=value):
                self.assertEqual(cell(value), "'" + value)
        self.assertEqual(cell(-5), -5)
        self.assertEqual(cell(None), "")
        self.assertEqual(cell("alice@example.org"), "alice@example.org")
