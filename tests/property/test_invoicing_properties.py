"""Hypothesis properties of invoice composition: lines add up, nothing goes negative."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.discount import Coupon
from invoicing.engine.model import InvoiceLineItem, InvoiceStatus, LineType
from invoicing.engine.tax import TaxRule
from rating.money import Money
from rating.periods import Period

pytestmark = pytest.mark.property

START = datetime(2026, 1, 1, tzinfo=UTC)
charges = st.lists(
    st.tuples(st.sampled_from([LineType.RECURRING, LineType.USAGE, LineType.ADJUSTMENT]), st.integers(0, 10**9)),
    max_size=6,
)
coupons = st.one_of(
    st.none(),
    st.builds(lambda p: Coupon("P", percent_off=p), st.decimals(0, 100, places=3)),
    st.builds(lambda a: Coupon("A", amount_off=a), st.decimals(0, 10**7, places=2)),
)
rules = st.lists(st.builds(lambda r: TaxRule("X", "T", r), st.decimals(0, 30, places=2)), max_size=3)


@given(charges, coupons, rules, st.booleans(), st.integers(0, 10**9), st.integers(0, 10**8))
def test_lines_add_up_and_nothing_is_negative(lines, coupon, tax_rules, inclusive, credit, paid) -> None:  # type: ignore[no-untyped-def]
    invoice = compose_invoice(
        tenant_id="t",
        subscription_id="s",
        plan_code="p",
        period=Period(START, START + timedelta(days=31)),
        currency="USD",
        charges=[InvoiceLineItem(kind, "charge", Money(amount, "USD")) for kind, amount in lines],
        coupon=coupon,
        tax_rules=tax_rules,
        tax_inclusive=inclusive,
        credit_available=Money(credit, "USD"),
        amount_paid=Money(paid, "USD"),
    )
    by_type = {t: sum(line.amount.amount for line in invoice.line_items if line.type is t) for t in LineType}
    assert invoice.subtotal.amount == sum(amount for _, amount in lines)
    assert invoice.discount_total.amount == -by_type[LineType.DISCOUNT]
    assert 0 <= invoice.discount_total.amount <= invoice.subtotal.amount
    assert invoice.tax_total.amount == by_type[LineType.TAX] >= 0
    gross = invoice.subtotal.amount - invoice.discount_total.amount
    if inclusive:
        assert invoice.total.amount == gross
        assert invoice.tax_total.amount <= gross
    else:
        assert invoice.total.amount == sum(line.amount.amount for line in invoice.line_items)
    assert 0 <= invoice.credits_applied.amount <= credit
    assert invoice.amount_due.amount >= 0
    assert invoice.amount_due.amount == max(0, invoice.total.amount - invoice.credits_applied.amount - paid)
    finalized = finalize(invoice, 1, START + timedelta(days=31))
    assert (finalized.status is InvoiceStatus.PAID) == (invoice.amount_due.amount == 0)


@given(st.decimals(0, 100, places=2), st.integers(1, 10**9))
def test_percent_discount_is_rounded_once_half_up(percent, subtotal) -> None:  # type: ignore[no-untyped-def]
    invoice = compose_invoice(
        tenant_id="t",
        subscription_id="s",
        plan_code="p",
        period=Period(START, START + timedelta(days=1)),
        currency="USD",
        charges=[InvoiceLineItem(LineType.RECURRING, "base", Money(subtotal, "USD"))],
        coupon=Coupon("P", percent_off=percent),
        tax_rules=[],
        tax_inclusive=False,
        credit_available=Money(0, "USD"),
    )
    exact = Decimal(subtotal) * percent / 100
    assert abs(Decimal(invoice.discount_total.amount) - exact) <= Decimal("0.5")
