"""Exact decimals: the one float door, string parsing limits, printing."""

from __future__ import annotations

import sys
from decimal import Decimal
from fractions import Fraction

import pytest

from rating.errors import InvalidValue
from rating.numbers import decimal_from_double, format_decimal, fraction_to_decimal, parse_decimal

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


@pytest.mark.xfail(
    strict=True,
    reason="BUG: parse_decimal raises decimal.InvalidOperation (not InvalidValue) when a number with more than "
    "12 fractional digits has a large integer part: the quantize check needs more than the 60-digit context",
)
def test_parse_decimal_rejects_a_long_number_with_13_fractional_digits() -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_decimal("1" * 50 + ".0000000000001", "f")
    assert caught.value.field == "f"


@pytest.mark.xfail(
    strict=True,
    reason="BUG (minor): parse_decimal accepts Python's underscore digit grouping ('1_000' is read as 1000), "
    "which is not a decimal string in any wire or file format",
)
def test_parse_decimal_rejects_underscore_grouping() -> None:
    with pytest.raises(InvalidValue):
        parse_decimal("1_000", "f")


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


@pytest.mark.xfail(
    sys.version_info < (3, 12),
    strict=True,
    reason="BUG: decimal_from_double accepts ints by its type check but calls value.is_integer(), which int only "
    "has from Python 3.12; on 3.11 (requires-python >=3.11) an int raises AttributeError",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="BUG: decimal_from_double raises decimal.InvalidOperation for doubles of 1e48 or more (the 12-place "
    "quantize overflows the 60-digit context before the 1e26 bound is checked); validate() lets it escape",
)
@pytest.mark.parametrize("value", [1e48, 1e300, -1e300, float(10**60)])
def test_decimal_from_double_rejects_very_large_doubles_as_invalid(value: float) -> None:
    with pytest.raises(InvalidValue):
        decimal_from_double(value, "value")


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
