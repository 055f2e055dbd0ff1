"""Proration of the base price: the exact fraction of seconds used, rounded once."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from rating.money import Money, to_minor


def prorated_base(base_price: Decimal, currency: str, fraction: Fraction) -> Money:
    """The base price for ``fraction`` of a period, rounded half-up to the minor unit once."""
    return Money(to_minor(Fraction(base_price) * fraction, currency), currency)
