"""Discounts (coupons): percentage or fixed amount on the subtotal, never below zero."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from invoicing.engine.model import InvoiceLineItem, LineType
from rating.errors import InvalidValue
from rating.money import Money, round_half_up, to_minor
from rating.numbers import format_decimal


class CouponDuration(StrEnum):
    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


@dataclass(frozen=True, slots=True)
class Coupon:
    """A coupon: exactly one of ``percent_off`` (0–100) and ``amount_off`` (major units)."""

    code: str
    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    duration: CouponDuration = CouponDuration.ONCE
    duration_in_periods: int | None = None

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise InvalidValue("percent_off", "a coupon has exactly one of percent_off and amount_off")
        if self.percent_off is not None and not 0 <= self.percent_off <= 100:
            raise InvalidValue("percent_off", f"must be between 0 and 100, got {self.percent_off}")
        if self.duration is CouponDuration.REPEATING and not self.duration_in_periods:
            raise InvalidValue("duration_in_periods", "a repeating coupon needs duration_in_periods ≥ 1")

    def applies_to(self, invoices_discounted: int) -> bool:
        """Whether the next invoice still gets the discount, given how many already did."""
        if self.duration is CouponDuration.FOREVER:
            return True
        if self.duration is CouponDuration.ONCE:
            return invoices_discounted == 0
        return invoices_discounted < (self.duration_in_periods or 0)


def discount_line(coupon: Coupon, subtotal: Money) -> InvoiceLineItem | None:
    """The (negative) DISCOUNT line for ``subtotal``, capped so the discounted subtotal stays ≥ 0."""
    if subtotal.amount <= 0:
        return None
    if coupon.percent_off is not None:
        wanted = round_half_up(Fraction(subtotal.amount) * Fraction(coupon.percent_off) / 100)
        description = f"Coupon {coupon.code} ({format_decimal(coupon.percent_off)}% off)"
    else:
        assert coupon.amount_off is not None
        wanted = to_minor(coupon.amount_off, subtotal.currency)
        description = f"Coupon {coupon.code} ({format_decimal(coupon.amount_off)} {subtotal.currency} off)"
    amount = min(wanted, subtotal.amount)
    if amount <= 0:
        return None
    return InvoiceLineItem(
        LineType.DISCOUNT, description, Money(-amount, subtotal.currency), metadata={"coupon": coupon.code}
    )
