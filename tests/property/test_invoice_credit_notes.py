"""Invariants of ADJUSTMENT and REFUND credit notes on one invoice (``credit_invoice``), over any
sequence of notes, accepted or refused: what is owed and what is refunded never go below zero or
past what there is, an accepted note moves its amount exactly, a refused one changes nothing, and
the status says what is left."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.engine.credit import CreditType, InvoiceBalance, credit_invoice
from invoicing.engine.model import InvoiceStatus
from rating.errors import BillingError
from rating.money import Money

pytestmark = pytest.mark.property


def usd(amount: int) -> Money:
    return Money(amount, "USD")


@st.composite
def finalized(draw: st.DrawFn) -> InvoiceBalance:
    """A finalized invoice: unpaid (PENDING or OVERDUE), or PAID by credit or in money."""
    due = draw(st.integers(0, 10**6))
    status = draw(st.sampled_from([InvoiceStatus.PENDING, InvoiceStatus.OVERDUE]))
    if due == 0 or draw(st.booleans()):  # settled: paid in money (or nothing was due)
        return InvoiceBalance(InvoiceStatus.PAID, usd(due), usd(0), usd(0), usd(0))
    return InvoiceBalance(status, usd(0), usd(due), usd(0), usd(0))


notes = st.lists(
    st.tuples(st.sampled_from([CreditType.ADJUSTMENT, CreditType.REFUND, CreditType.BALANCE]), st.integers(-5, 10**6)),
    max_size=12,
)


@given(finalized(), notes)
def test_notes_never_take_an_invoice_past_zero_and_move_exactly_their_amount(
    start: InvoiceBalance, sequence: list[tuple[CreditType, int]]
) -> None:
    balance = start
    owed = start.amount_due + start.amount_credited  # what was owed at finalization
    for kind, units in sequence:
        try:
            after = credit_invoice(balance, kind, usd(units))
        except BillingError:
            continue  # refused: nothing changed (the value is immutable; the ledger rolls back)
        assert units > 0 and kind is not CreditType.BALANCE
        if kind is CreditType.ADJUSTMENT:
            assert after.amount_due == balance.amount_due - usd(units)
            assert after.amount_refunded == balance.amount_refunded
        else:
            assert after.amount_refunded == balance.amount_refunded + usd(units)
            assert after.amount_due == balance.amount_due
        balance = after
        assert balance.amount_due.amount >= 0
        assert 0 <= balance.amount_refunded.amount <= balance.amount_paid.amount
        assert balance.amount_due + balance.amount_credited == owed
        assert balance.amount_paid == start.amount_paid  # a note never records a payment
        if balance.status is InvoiceStatus.REFUNDED:
            assert balance.amount_refunded == balance.amount_paid
        if balance.amount_due.amount == 0 and balance.amount_refunded != balance.amount_paid:
            assert balance.status is InvoiceStatus.PAID
        if balance.amount_due.amount > 0:
            assert balance.status is start.status


@given(finalized(), st.integers(1, 10**6))
def test_a_note_in_another_currency_is_refused(start: InvoiceBalance, units: int) -> None:
    with pytest.raises(BillingError, match=r"amount\.currency_code"):
        credit_invoice(start, CreditType.ADJUSTMENT, Money(units, "IDR"))
