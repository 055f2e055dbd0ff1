"""Exact decimals: the one float door, string parsing limits, printing."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from rating.errors import InvalidValue
from rating.numbers import decimal_from_double, exact_double, format_decimal, fraction_to_decimal, parse_decimal

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.002", "0.002"),
        ("49.00", "49.00"),
        ("1500", "1500"),
        (" 2.5 ", "2.5"),
        ("+3", "3"),
        ("0.000000000001", "0.000000000001"),  # exactly 12 fractional digits
        ("1.0000000000000", "1"),  # 13 digits but the 13th is a zero: the value has 12
        ("1E+3", "1000"),
        ("99999999999999999999999999.9", "99999999999999999999999999.9"),  # just below 1e26
        (7, "7"),
    ],
)
def test_parse_decimal_accepts(text: object, expected: str) -> None:
    assert parse_decimal(text, "f") == Decimal(expected)


@pytest.mark.parametrize(
    "text",
    [
        "0.0000000000001",  # 13 fractional digits
        "1e-13",
        "abc",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-inf",
        "0x10",
        "1,5",
        "1.5f",
        "1.2.3",
        "",
        "1e26",  # too big for Decimal128(12)
        "-1",  # negative not allowed by default
        1.5,  # floats lose exactness: must be written as strings
        True,
        None,
        [1],
        {"a": 1},
    ],
)
def test_parse_decimal_rejects_naming_the_field(text: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_decimal(text, "plans[0].meters[0].unit_price")
    assert caught.value.field == "plans[0].meters[0].unit_price"
    assert str(caught.value).startswith("plans[0].meters[0].unit_price: ")


def test_negative_is_allowed_only_when_asked() -> None:
    assert parse_decimal("-1.25", "f", allow_negative=True) == Decimal("-1.25")


@pytest.mark.parametrize(
    "text",
    [
        "1" * 50 + ".0000000000001",  # used to raise decimal.InvalidOperation: quantize beyond 60 digits
        "1" * 200,
        "9" * 30 + "." + "0" * 40 + "1",
        "1e999999999",
    ],
)
def test_parse_decimal_rejects_long_numbers_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_decimal(text, "f")
    assert caught.value.field == "f"


def test_parse_decimal_accepts_long_text_below_the_bound() -> None:
    # 31 significant digits: abs() in the 28-digit default context would round it up to 1e26
    assert parse_decimal("99999999999999999999999999.99999", "f") == Decimal("99999999999999999999999999.99999")
    assert parse_decimal("1." + "0" * 60, "f") == Decimal(1)


@pytest.mark.parametrize("text", ["1_000", "1_000.5", "0.000_001", "\u0661\u0662", "1e1_0"])
def test_parse_decimal_rejects_what_only_python_reads_as_a_decimal(text: str) -> None:
    # Decimal() takes underscore grouping and non-ASCII digits; no wire or file format does
    with pytest.raises(InvalidValue) as caught:
        parse_decimal(text, "f")
    assert caught.value.field == "f"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, "0.1"),
        (0.1 + 0.2, "0.3"),  # 0.30000000000000004 rounds half-even to 12 places
        (1.0, "1"),
        (-2.5, "-2.5"),
        (1e-12, "1E-12"),
        (1e-13, "0"),  # below the 12th place
        (5e-13, "0"),  # a half at the 13th place rounds to even (0)
        (1.5e-12, "2E-12"),
        (2.5e-12, "2E-12"),
        (123456.789, "123456.789"),
        (2.0**60, "1.152921504606847E+18"),  # beyond 2^53: the shortest round-trip text, not the binary value
        (1e25, "1E+25"),
    ],
)
def test_decimal_from_double_reads_the_shortest_round_trip_decimal(value: float, expected: str) -> None:
    assert decimal_from_double(value) == Decimal(expected)


@pytest.mark.parametrize(("value", "expected"), [(3, "3"), (0, "0"), (10**30, "1E+30")])
def test_decimal_from_double_takes_ints(value: int, expected: str) -> None:
    if value >= 10**26:
        with pytest.raises(InvalidValue):
            decimal_from_double(value)
    else:
        assert decimal_from_double(value) == Decimal(expected)


def test_ten_tenths_sum_to_exactly_one() -> None:
    assert sum((decimal_from_double(0.1) for _ in range(10)), Decimal(0)) == Decimal(1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e26, -1e26, 1e30, 1e47])
def test_decimal_from_double_rejects_non_finite_and_huge_naming_the_field(value: float) -> None:
    with pytest.raises(InvalidValue) as caught:
        decimal_from_double(value, "events[3].value")
    assert caught.value.field == "events[3].value"


@pytest.mark.parametrize("value", ["1", None, True, Decimal("1")])
def test_decimal_from_double_rejects_non_numbers(value: object) -> None:
    with pytest.raises(InvalidValue):
        decimal_from_double(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1e48, 1e300, -1e300, float(10**60), 1.7976931348623157e308, 10**26, -(10**40)])
def test_decimal_from_double_rejects_very_large_numbers_naming_the_field(value: float) -> None:
    # doubles of 1e48 or more used to raise decimal.InvalidOperation from the 12-place quantize
    with pytest.raises(InvalidValue) as caught:
        decimal_from_double(value, "events[0].value")
    assert caught.value.field == "events[0].value"


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (Decimal("1500"), "1500"),
        (Decimal("1.5E+3"), "1500"),
        (Decimal("0.00200"), "0.002"),
        (Decimal("0"), "0"),
        (Decimal("-0.0"), "0"),
        (Decimal("1E-12"), "0.000000000001"),
        (Fraction(1, 3), "0.333333333333"),
        (Fraction(2, 3), "0.666666666667"),
        (Fraction(1, 2), "0.5"),
    ],
)
def test_format_decimal_is_plain_without_exponent_or_trailing_zeros(number: Decimal | Fraction, text: str) -> None:
    assert format_decimal(number) == text


def test_fraction_to_decimal_rounds_half_even_at_12_places() -> None:
    assert fraction_to_decimal(Fraction(1, 2 * 10**12)) == Decimal(0)
    assert fraction_to_decimal(Fraction(3, 2 * 10**12)) == Decimal("2E-12")
    assert fraction_to_decimal(Fraction(7, 4)) == Decimal("1.75")


@pytest.mark.parametrize("number", [Decimal("0.1"), Decimal("2.25"), 9_007_199_254_740_992, Decimal("-5"), "1.5e20"])
def test_exact_double_carries_a_decimal_that_a_double_holds(number: Decimal | int | str) -> None:
    assert decimal_from_double(exact_double(number)) == Decimal(number)


@pytest.mark.parametrize(
    "number", [9_007_199_254_740_993, Decimal("12345678901234567.25"), Decimal("1e-13"), Decimal("1e26"), "NaN"]
)
def test_exact_double_refuses_what_no_double_carries_naming_the_field(number: Decimal | int | str) -> None:
    with pytest.raises(InvalidValue) as caught:
        exact_double(number, "events[3].value")
    assert caught.value.field == "events[3].value"
