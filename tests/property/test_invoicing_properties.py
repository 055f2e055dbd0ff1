"""Hypothesis properties of invoice composition: lines add up, nothing goes negative."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.discount import Coupon
from invoicing.engine.model import InvoiceLineItem, InvoiceStatus, LineType
from invoicing.engine.tax import TaxRule, tax_amount
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


CURRENCIES = ["USD", "IDR", "BHD", "JPY"]
signed_charges = st.lists(
    st.tuples(
        st.sampled_from([LineType.RECURRING, LineType.USAGE, LineType.ADJUSTMENT]),
        st.integers(-(10**7), 10**9),
    ).map(lambda t: (t[0], t[1] if t[0] is LineType.ADJUSTMENT else abs(t[1]))),  # only adjustments go negative
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    signed_charges,
    coupons,
    rules,
    st.booleans(),
    st.integers(0, 10**9),
    st.integers(0, 10**8),
    st.sampled_from(CURRENCIES),
)
def test_with_negative_adjustments_in_any_currency_lines_still_add_up_and_nothing_is_negative(  # type: ignore[no-untyped-def]
    lines, coupon, tax_rules, inclusive, credit, paid, currency
) -> None:
    invoice = compose_invoice(
        tenant_id="t",
        subscription_id="s",
        plan_code="p",
        period=Period(START, START + timedelta(days=31)),
        currency=currency,
        charges=[InvoiceLineItem(kind, "charge", Money(amount, currency)) for kind, amount in lines],
        coupon=coupon,
        tax_rules=tax_rules,
        tax_inclusive=inclusive,
        credit_available=Money(credit, currency),
        amount_paid=Money(paid, currency),
    )
    assert {line.amount.currency for line in invoice.line_items} <= {currency}
    assert invoice.subtotal.amount == sum(amount for _, amount in lines)
    lines_sum = sum(line.amount.amount for line in invoice.line_items)
    if inclusive:  # the TAX lines are the part of the gross that is tax: the gross is the total
        tax = sum(line.amount.amount for line in invoice.line_items if line.type is LineType.TAX)
        assert invoice.total.amount == lines_sum - tax
    else:
        assert invoice.total.amount == lines_sum
    assert invoice.total == invoice.subtotal - invoice.discount_total + (
        Money.zero(currency) if inclusive else invoice.tax_total
    )
    assert invoice.discount_total.amount >= 0 and invoice.tax_total.amount >= 0
    assert 0 <= invoice.credits_applied.amount <= credit
    assert invoice.amount_due.amount >= 0
    assert invoice.amount_due.amount == max(
        0, invoice.total.amount - invoice.credits_applied.amount - invoice.amount_paid.amount
    )
    types = [line.type for line in invoice.line_items]
    assert types[: len(lines)] == [kind for kind, _ in lines]  # charges first, as given
    discounts, taxes = types[len(lines) :].count(LineType.DISCOUNT), types[len(lines) :].count(LineType.TAX)
    assert types[len(lines) :] == [LineType.DISCOUNT] * discounts + [LineType.TAX] * taxes  # then discount, tax
    assert discounts <= 1 and taxes in (0, len(tax_rules))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**8), st.lists(st.integers(-(10**6), 10**7), min_size=1, max_size=8))
def test_a_credit_balance_is_spent_and_carried_without_loss(balance, totals) -> None:  # type: ignore[no-untyped-def]
    """Invoice after invoice, credits applied plus what is left always equal the starting balance."""
    left = Money(balance, "USD")
    spent = 0
    for total in totals:
        invoice = compose_invoice(
            tenant_id="t",
            subscription_id="s",
            plan_code="p",
            period=Period(START, START + timedelta(days=1)),
            currency="USD",
            charges=[InvoiceLineItem(LineType.ADJUSTMENT, "charge", Money(total, "USD"))],
            coupon=None,
            tax_rules=[],
            tax_inclusive=False,
            credit_available=left,
        )
        left = left - invoice.credits_applied
        spent += invoice.credits_applied.amount
        assert left.amount >= 0 and invoice.amount_due.amount >= 0
    assert spent + left.amount == balance


@given(st.integers(1, 10**12), st.decimals(min_value=0, max_value=100, places=3))
def test_inclusive_tax_is_the_part_of_the_gross_that_is_tax(gross, rate) -> None:  # type: ignore[no-untyped-def]
    """tax = round_half_up(gross − gross / (1 + rate)); net + tax = gross; exclusive tax on that net
    gives the gross back within a minor unit (per rounding)."""
    rule = TaxRule("X", "T", rate)
    tax = tax_amount(Money(gross, "IDR"), rule, inclusive=True).amount
    assert 0 <= tax <= gross
    exact = Fraction(gross) - Fraction(gross) / (1 + Fraction(rate) / 100)
    assert abs(tax - exact) <= Fraction(1, 2)
    net = gross - tax
    assert abs(net + tax_amount(Money(net, "IDR"), rule, inclusive=False).amount - gross) <= 1 + Fraction(rate) / 100
