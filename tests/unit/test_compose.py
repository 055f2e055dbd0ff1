"""Invoice composition: charges → discount → tax → credits, each line rounded once, totals as sums."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.discount import Coupon
from invoicing.engine.model import Invoice, InvoiceLineItem, InvoiceStatus, LineType
from invoicing.engine.tax import TaxRule
from rating.errors import InvalidValue
from rating.money import Money
from rating.periods import Period

pytestmark = pytest.mark.unit


def lines_of(invoice: Invoice, line_type: LineType) -> list[InvoiceLineItem]:
    return [line for line in invoice.line_items if line.type is line_type]


JAN = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
D = Decimal


def usd(amount: int) -> Money:
    return Money(amount, "USD")


def compose(
    charges: list[InvoiceLineItem],
    *,
    coupon: Coupon | None = None,
    rules: list[TaxRule] | None = None,
    inclusive: bool = False,
    credit: int = 0,
    paid: int = 0,
    currency: str = "USD",
) -> Invoice:
    return compose_invoice(
        tenant_id="t1",
        subscription_id="s1",
        plan_code="pro",
        period=JAN,
        currency=currency,
        charges=charges,
        coupon=coupon,
        tax_rules=rules or [],
        tax_inclusive=inclusive,
        credit_available=Money(credit, currency),
        amount_paid=Money(paid, currency),
    )


BASE = InvoiceLineItem(LineType.RECURRING, "base", usd(4900), D(1), D(49))
USAGE = InvoiceLineItem(LineType.USAGE, "usage", usd(1234), D(617), D("0.02"), "api_calls")
LATE = InvoiceLineItem(LineType.ADJUSTMENT, "late", usd(66))
PPN = TaxRule("ID", "PPN", D(11))
EXTRA = TaxRule("ID", "Levy", D("2.5"))


def test_lines_are_ordered_charges_discount_tax() -> None:
    invoice = compose([BASE, USAGE, LATE], coupon=Coupon("C", percent_off=D(10)), rules=[PPN, EXTRA], credit=1000)
    assert [line.type for line in invoice.line_items] == [
        LineType.RECURRING,
        LineType.USAGE,
        LineType.ADJUSTMENT,
        LineType.DISCOUNT,
        LineType.TAX,
        LineType.TAX,
    ]
    subtotal = 4900 + 1234 + 66  # 6200
    discount = 620
    taxed = subtotal - discount  # 5580: tax is computed after the discount
    ppn, levy = 614, 140  # 613.8 → 614, 139.5 → 140 (half-up)
    assert invoice.subtotal == usd(subtotal)
    assert invoice.discount_total == usd(discount)
    assert [line.amount for line in lines_of(invoice, LineType.DISCOUNT)] == [usd(-discount)]
    assert [line.amount for line in lines_of(invoice, LineType.TAX)] == [usd(ppn), usd(levy)]
    assert invoice.tax_total == usd(ppn + levy)
    assert invoice.total == usd(taxed + ppn + levy)
    assert invoice.credits_applied == usd(1000)  # credits come last, on the taxed total
    assert invoice.amount_due == usd(taxed + ppn + levy - 1000)
    assert sum(line.amount.amount for line in invoice.line_items) == invoice.total.amount


def test_tax_inclusive_total_is_the_gross() -> None:
    gross = InvoiceLineItem(LineType.RECURRING, "base", Money(111_000, "IDR"))
    invoice = compose([gross], rules=[PPN], inclusive=True, currency="IDR")
    assert invoice.tax_total == Money(11_000, "IDR")  # 111000 − 111000/1.11
    assert invoice.total == Money(111_000, "IDR")
    assert lines_of(invoice, LineType.TAX)[0].metadata["inclusive"] == "true"


def test_tax_inclusive_after_discount_is_on_the_discounted_gross() -> None:
    gross = InvoiceLineItem(LineType.RECURRING, "base", Money(100_000, "IDR"))
    invoice = compose([gross], coupon=Coupon("C", amount_off=D(10_000)), rules=[PPN], inclusive=True, currency="IDR")
    assert invoice.total == Money(90_000, "IDR")
    assert invoice.tax_total == Money(8_919, "IDR")  # 90000 − 90000/1.11 = 8918.92 → 8919


def test_credits_never_make_amount_due_negative_and_the_rest_carries() -> None:
    invoice = compose([BASE], credit=10_000)
    assert invoice.credits_applied == usd(4900)
    assert invoice.amount_due == usd(0)
    assert finalize(invoice, 1, FEB_1).status is InvoiceStatus.PAID


def test_amount_paid_is_deducted_before_credits() -> None:
    invoice = compose([BASE], credit=10_000, paid=900)
    assert (invoice.credits_applied, invoice.amount_due) == (usd(4000), usd(0))
    overpaid = compose([BASE], credit=500, paid=6000)
    assert (overpaid.credits_applied, overpaid.amount_due) == (usd(0), usd(0))


def test_a_discount_larger_than_the_subtotal_stops_at_zero_and_no_tax_is_due() -> None:
    invoice = compose([BASE], coupon=Coupon("BIG", amount_off=D(100)), rules=[PPN])
    assert invoice.discount_total == usd(4900)
    assert invoice.tax_total == usd(0) and lines_of(invoice, LineType.TAX) == []
    assert invoice.total == usd(0) and invoice.amount_due == usd(0)


def test_an_empty_invoice_has_no_discount_or_tax_lines() -> None:
    zero = InvoiceLineItem(LineType.USAGE, "usage", usd(0), D(0), D("0.02"), "api_calls")
    invoice = compose([zero], coupon=Coupon("C", percent_off=D(50)), rules=[PPN])
    assert [line.type for line in invoice.line_items] == [LineType.USAGE]
    assert invoice.total == usd(0)


def test_a_negative_adjustment_never_makes_anything_negative() -> None:
    refund = InvoiceLineItem(LineType.ADJUSTMENT, "late", usd(-5000))
    invoice = compose([BASE, refund], coupon=Coupon("C", percent_off=D(10)), rules=[PPN], credit=300)
    assert invoice.subtotal == usd(-100)
    assert invoice.discount_total == usd(0) and invoice.tax_total == usd(0)
    assert invoice.credits_applied == usd(0)
    assert invoice.amount_due == usd(0)


def test_charges_must_be_charges_in_the_invoice_currency() -> None:
    with pytest.raises(InvalidValue) as caught:
        compose([BASE, InvoiceLineItem(LineType.TAX, "tax", usd(1))])
    assert caught.value.field == "charges[1].type"
    with pytest.raises(InvalidValue) as caught:
        compose([BASE], currency="EUR")
    assert caught.value.field == "charges[0].amount"


def test_finalize_numbers_and_freezes() -> None:
    draft = compose([BASE])
    final = finalize(draft, 42, FEB_1)
    assert (final.status, final.invoice_number, final.issued_at) == (InvoiceStatus.PENDING, "INV-2026-000042", FEB_1)
    with pytest.raises(InvalidValue):
        finalize(final, 43, FEB_1)
    with pytest.raises(InvalidValue):
        finalize(draft, 0, FEB_1)
