"""The invoice state machine and dunning as pure decisions (invoicing/engine/lifecycle.py): every move
the design allows and none other, payments that add up, due dates and retries on the tenant's
schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.engine.lifecycle import (
    INVOICE_TRANSITIONS,
    Payable,
    PaymentTerms,
    TransitionRefused,
    apply_payment,
    apply_refund,
    cancel_at,
    due_at,
    is_overdue,
    next_retry_at,
    transition,
)
from invoicing.engine.model import InvoiceStatus as S
from rating.errors import InvalidValue
from rating.money import Money

pytestmark = pytest.mark.unit
ISSUED = datetime(2026, 2, 1, 1, tzinfo=UTC)
ALLOWED = {
    (S.DRAFT, S.PENDING),
    (S.DRAFT, S.PAID),
    (S.DRAFT, S.VOID),
    (S.PENDING, S.PAID),
    (S.PENDING, S.OVERDUE),
    (S.PENDING, S.VOID),
    (S.OVERDUE, S.PAID),
    (S.OVERDUE, S.VOID),
    (S.PAID, S.REFUNDED),
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_only_the_designed_moves_are_allowed(current: S, target: S) -> None:
    if (current, target) in ALLOWED:
        assert transition(current, target) is target
    else:
        with pytest.raises(TransitionRefused, match=f"from {current} to {target}"):
            transition(current, target)
    assert {(a, b) for a, targets in INVOICE_TRANSITIONS.items() for b in targets} == ALLOWED


def usd(amount: int) -> Money:
    return Money(amount, "USD")


def test_a_full_payment_pays_and_a_partial_one_leaves_the_rest_due() -> None:
    invoice = Payable(S.PENDING, usd(0), usd(1110))
    partial = apply_payment(invoice, usd(500))
    assert partial == Payable(S.PENDING, usd(500), usd(610))
    assert apply_payment(partial, usd(610)) == Payable(S.PAID, usd(1110), usd(0))
    assert apply_payment(Payable(S.OVERDUE, usd(0), usd(1110)), usd(1110)).status is S.PAID


@pytest.mark.parametrize(
    ("invoice", "amount", "message"),
    [
        (Payable(S.PAID, usd(1110), usd(0)), usd(1), "a PAID invoice takes no payment"),
        (Payable(S.VOID, usd(0), usd(1110)), usd(1), "a VOID invoice takes no payment"),
        (Payable(S.PENDING, usd(0), usd(1110)), usd(1111), "at most the 1110 due"),
        (Payable(S.PENDING, usd(0), usd(1110)), usd(0), "must be above 0"),
        (Payable(S.PENDING, usd(0), usd(1110)), Money(1110, "IDR"), "must be the invoice's USD"),
    ],
)
def test_a_payment_the_invoice_cannot_take_is_refused(invoice: Payable, amount: Money, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        apply_payment(invoice, amount)


@given(total=st.integers(1, 10**12), cuts=st.lists(st.integers(1, 10**12), max_size=8))
def test_payments_add_up_to_the_total_whatever_their_split(total: int, cuts: list[int]) -> None:
    invoice = Payable(S.PENDING, usd(0), usd(total))
    for cut in cuts:
        if invoice.status is S.PAID:
            break
        invoice = apply_payment(invoice, usd(min(cut, invoice.amount_due.amount)))
        assert invoice.amount_paid.amount + invoice.amount_due.amount == total
        assert (invoice.status is S.PAID) == (invoice.amount_due.amount == 0)


def test_only_a_paid_invoice_is_refunded() -> None:
    assert apply_refund(Payable(S.PAID, usd(1110), usd(0))).status is S.REFUNDED
    with pytest.raises(TransitionRefused):
        apply_refund(Payable(S.PENDING, usd(0), usd(1110)))


def test_an_invoice_is_overdue_from_its_net_days_on() -> None:
    terms = PaymentTerms(net_days=14)
    assert due_at(ISSUED, terms) == datetime(2026, 2, 15, 1, tzinfo=UTC)
    assert not is_overdue(S.PENDING, ISSUED, datetime(2026, 2, 15, 0, 59, tzinfo=UTC), terms)
    assert is_overdue(S.PENDING, ISSUED, datetime(2026, 2, 15, 1, tzinfo=UTC), terms)
    assert not is_overdue(S.PAID, ISSUED, datetime(2026, 3, 1, tzinfo=UTC), terms)


def test_retries_follow_the_schedule_from_the_first_failure_then_stop() -> None:
    terms = PaymentTerms(retry_days=(1, 3, 5, 7), cancel_after_days=10)
    retries = [next_retry_at(ISSUED, failed, terms) for failed in range(1, 6)]
    assert [r.day if r else None for r in retries] == [2, 4, 6, 8, None]
    assert cancel_at(ISSUED, terms) == datetime(2026, 2, 11, 1, tzinfo=UTC)
    assert cancel_at(ISSUED, PaymentTerms()) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"net_days": -1}, "net_days: must be 0 to 365"),
        ({"retry_days": (3, 1)}, r"retry_days\[1\]: must grow"),
        ({"retry_days": (0,)}, r"retry_days\[0\]"),
        ({"cancel_after_days": 400}, "cancel_after_days"),
    ],
)
def test_bad_payment_terms_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        PaymentTerms(**fields)  # type: ignore[arg-type]
