"""Proration of the base price: the exact share of seconds, rounded once half-up."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from invoicing.engine.proration import prorated_base
from rating.money import Money

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("base", "currency", "share", "amount"),
    [
        ("49.00", "USD", Fraction(1), 4900),
        ("49.00", "USD", Fraction(14, 31), 2213),  # 22.129… rounded once
        ("49.00", "USD", Fraction(17, 31), 2687),  # 26.870…: the two halves make 4900
        ("10", "USD", Fraction(1, 2), 500),
        ("0.01", "USD", Fraction(1, 2), 1),  # half a cent rounds up
        ("150000", "IDR", Fraction(1, 3), 50_000),
        ("99", "IDR", Fraction(1, 2), 50),
        ("1.000", "BHD", Fraction(1, 3), 333),
        ("49.00", "USD", Fraction(0), 0),
    ],
)
def test_prorated_base(base: str, currency: str, share: Fraction, amount: int) -> None:
    assert prorated_base(Decimal(base), currency, share) == Money(amount, currency)
