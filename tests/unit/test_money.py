"""Money: integer minor units, ISO 4217 exponents, and the one half-up rounding."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from rating.errors import InvalidValue
from rating.money import Money, currency_exponent, minor_to_major, round_half_up, to_minor

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("IDR", 0), ("USD", 2), ("JPY", 0), ("BHD", 3), ("KWD", 3), ("EUR", 2), ("KRW", 0), ("VND", 0), ("CLF", 4)],
)
def test_currency_exponents(currency: str, exponent: int) -> None:
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize("currency", ["XXX", "usd", "", "US", "DOLLAR"])
def test_an_unknown_currency_is_rejected_naming_the_field(currency: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        currency_exponent(currency, "plans[0].currency_code")
    assert caught.value.field == "plans[0].currency_code"


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        (Fraction(0), 0),
        (Fraction(1, 2), 1),
        (Fraction(3, 2), 2),
        (Fraction(5, 2), 3),  # half-up, not banker's rounding
        (Fraction(49, 100), 0),
        (Fraction(51, 100), 1),
        (Fraction(-1, 2), -1),  # halves go away from zero
        (Fraction(-5, 2), -3),
        (Fraction(-49, 100), 0),
        (Fraction(10**30 + 1, 2), (10**30) // 2 + 1),
    ],
)
def test_round_half_up(value: Fraction, rounded: int) -> None:
    assert round_half_up(value) == rounded


@pytest.mark.parametrize(
    ("major", "currency", "minor"),
    [
        ("0.005", "USD", 1),  # half a cent rounds up
        ("0.0049999", "USD", 0),
        ("0.015", "USD", 2),  # not half-even
        ("0.025", "USD", 3),
        ("1234.5", "IDR", 1235),  # whole rupiah
        ("1234.4999", "IDR", 1234),
        ("99.5", "JPY", 100),
        ("1.0005", "BHD", 1001),  # three decimals
        ("1.0004", "BHD", 1000),
        ("49.00", "USD", 4900),
        ("0", "USD", 0),
        ("-0.005", "USD", -1),
    ],
)
def test_to_minor_rounds_once_half_up(major: str, currency: str, minor: int) -> None:
    assert to_minor(Decimal(major), currency) == minor


def test_to_minor_takes_exact_fractions() -> None:
    assert to_minor(Fraction(1, 3), "USD") == 33
    assert to_minor(Fraction(2, 3), "USD") == 67
    assert to_minor(Fraction(1, 200), "USD") == 1
    assert to_minor(Fraction(1, 3), "BHD") == 333


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [(4900, "USD", "49.00"), (15000, "IDR", "15000"), (1001, "BHD", "1.001"), (-5, "USD", "-0.05"), (7, "JPY", "7")],
)
def test_minor_to_major_is_exact(minor: int, currency: str, major: str) -> None:
    assert minor_to_major(minor, currency) == Decimal(major)
    assert str(minor_to_major(minor, currency)) == major


def test_money_arithmetic_and_currency_mixing() -> None:
    a, b = Money(150, "USD"), Money(75, "USD")
    assert a + b == Money(225, "USD")
    assert a - b == Money(75, "USD")
    assert -a == Money(-150, "USD")
    assert Money.zero("IDR") == Money(0, "IDR")
    assert str(Money(4900, "USD")) == "49.00 USD"
    assert str(Money(15000, "IDR")) == "15000 IDR"
    with pytest.raises(InvalidValue, match="cannot mix"):
        _ = a + Money(1, "EUR")
    with pytest.raises(InvalidValue):
        _ = a - Money(1, "IDR")


@pytest.mark.parametrize("amount", [1.5, Decimal("1"), "1", True, None])
def test_money_holds_only_integer_minor_units(amount: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        Money(amount, "USD")  # type: ignore[arg-type]
    assert caught.value.field == "amount"


def test_money_rejects_an_unknown_currency() -> None:
    with pytest.raises(InvalidValue):
        Money(1, "ABC")
