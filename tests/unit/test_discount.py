"""Coupons: percent or amount off the subtotal, rounded half-up once, never below zero; durations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.engine.discount import Coupon, CouponDuration, discount_line
from invoicing.engine.model import LineType
from rating.errors import InvalidValue
from rating.money import Money

pytestmark = pytest.mark.unit
D = Decimal


@pytest.mark.parametrize(
    ("coupon", "subtotal", "discount"),
    [
        (Coupon("P", percent_off=D(10)), Money(4900, "USD"), 490),
        (Coupon("P", percent_off=D(10)), Money(5, "USD"), 1),  # 0.5 → 1, half-up
        (Coupon("P", percent_off=D(10)), Money(4, "USD"), 0),  # 0.4 → 0: no line at all
        (Coupon("P", percent_off=D("33.333")), Money(300, "USD"), 100),
        (Coupon("P", percent_off=D(100)), Money(4900, "USD"), 4900),
        (Coupon("A", amount_off=D("5.005")), Money(4900, "USD"), 501),
        (Coupon("A", amount_off=D(5000)), Money(150_000, "IDR"), 5000),  # whole rupiah
        (Coupon("A", amount_off=D("1.0005")), Money(5000, "BHD"), 1001),
        (Coupon("A", amount_off=D(100)), Money(4900, "USD"), 4900),  # capped at the subtotal
    ],
)
def test_discount_amounts(coupon: Coupon, subtotal: Money, discount: int) -> None:
    line = discount_line(coupon, subtotal)
    if discount == 0:
        assert line is None
        return
    assert line is not None
    assert line.type is LineType.DISCOUNT
    assert line.amount == Money(-discount, subtotal.currency)
    assert line.metadata == {"coupon": coupon.code}


@pytest.mark.parametrize("subtotal", [0, -100])
def test_no_discount_on_nothing(subtotal: int) -> None:
    assert discount_line(Coupon("P", percent_off=D(50)), Money(subtotal, "USD")) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "percent_off"),
        ({"percent_off": D(10), "amount_off": D(1)}, "percent_off"),
        ({"percent_off": D(101)}, "percent_off"),
        ({"percent_off": D(-1)}, "percent_off"),
        ({"percent_off": D(1), "duration": CouponDuration.REPEATING}, "duration_in_periods"),
    ],
)
def test_bad_coupons(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        Coupon("C", **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_durations() -> None:
    once = Coupon("C", percent_off=D(1))
    assert [once.applies_to(n) for n in range(3)] == [True, False, False]
    three = Coupon("C", percent_off=D(1), duration=CouponDuration.REPEATING, duration_in_periods=3)
    assert [three.applies_to(n) for n in range(5)] == [True, True, True, False, False]
    forever = Coupon("C", percent_off=D(1), duration=CouponDuration.FOREVER)
    assert all(forever.applies_to(n) for n in range(100))
