"""An invoice's life after finalization, as pure decisions: the state machine (DRAFT → PENDING →
PAID / OVERDUE / VOID; PAID → REFUNDED), what a payment does to the amounts, when an invoice is due,
and dunning (when a failed charge is retried, when the subscription falls PAST_DUE or is canceled).
Adapters ask these functions and store the answer; nothing here reads a clock or a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from invoicing.engine.model import InvoiceStatus
from rating.errors import InvalidValue
from rating.money import Money

S = InvoiceStatus
INVOICE_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    S.DRAFT: frozenset({S.PENDING, S.PAID, S.VOID}),  # PAID directly when nothing is due
    S.PENDING: frozenset({S.PAID, S.OVERDUE, S.VOID}),
    S.OVERDUE: frozenset({S.PAID, S.VOID}),
    S.PAID: frozenset({S.REFUNDED}),
    S.VOID: frozenset(),
    S.REFUNDED: frozenset(),
}
"""Every allowed move; a status not listed as a target of another cannot be reached from it."""

PAYABLE = frozenset({S.PENDING, S.OVERDUE})
"""Statuses in which an invoice can be charged."""


class TransitionRefused(InvalidValue):
    """A move the invoice state machine does not allow (e.g. a VOID invoice paid, PAID back to PENDING)."""


def transition(current: InvoiceStatus, target: InvoiceStatus) -> InvoiceStatus:
    """``target`` when the machine allows ``current`` → ``target``; TransitionRefused otherwise."""
    if target not in INVOICE_TRANSITIONS[current]:
        raise TransitionRefused("status", f"an invoice cannot go from {current} to {target}")
    return target


@dataclass(frozen=True, slots=True)
class Payable:
    """The part of an invoice a payment changes."""

    status: InvoiceStatus
    amount_paid: Money
    amount_due: Money


def apply_payment(invoice: Payable, amount: Money) -> Payable:
    """The invoice after ``amount`` was paid: paid grows, due shrinks (a payment above what is due is
    refused), PAID when nothing is left due, else unchanged in status (partial payment)."""
    if invoice.status not in PAYABLE:
        raise TransitionRefused("status", f"a {invoice.status} invoice takes no payment")
    if amount.currency != invoice.amount_due.currency:
        raise InvalidValue("amount.currency", f"must be the invoice's {invoice.amount_due.currency}")
    if amount.amount <= 0 or amount.amount > invoice.amount_due.amount:
        raise InvalidValue("amount", f"must be above 0 and at most the {invoice.amount_due.amount} due")
    due = invoice.amount_due - amount
    status = transition(invoice.status, S.PAID) if due.amount == 0 else invoice.status
    return Payable(status, invoice.amount_paid + amount, due)


def apply_void(invoice: Payable) -> Payable:
    """The invoice voided: nothing is owed any more. Only one that took no money: an invoice with a
    payment on it is refunded, not voided, so no money received is left without its record."""
    if invoice.amount_paid.amount > 0:
        raise TransitionRefused(
            "status", f"the invoice took {invoice.amount_paid.amount} in payments: refund it instead of voiding it"
        )
    return Payable(transition(invoice.status, S.VOID), invoice.amount_paid, Money.zero(invoice.amount_due.currency))


def apply_refund(invoice: Payable) -> Payable:
    """A PAID invoice refunded in full (the REFUND credit note carries the amount)."""
    return Payable(transition(invoice.status, S.REFUNDED), invoice.amount_paid, invoice.amount_due)


@dataclass(frozen=True, slots=True)
class PaymentTerms:
    """A tenant's payment terms: ``net_days`` after issue an unpaid invoice becomes OVERDUE; a failed
    charge is retried ``retry_days`` days after the first failure (e.g. 1, 3, 5, 7); when the last
    retry fails the subscription goes PAST_DUE, and CANCELED ``cancel_after_days`` later (None:
    never)."""

    net_days: int = 14
    retry_days: tuple[int, ...] = (1, 3, 5, 7)
    cancel_after_days: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.net_days <= 365:
            raise InvalidValue("net_days", f"must be 0 to 365, got {self.net_days}")
        if len(self.retry_days) > 20:
            raise InvalidValue("retry_days", "at most 20 retries")
        previous = 0
        for n, day in enumerate(self.retry_days):
            if not previous < day <= 365:
                raise InvalidValue(f"retry_days[{n}]", f"must grow, within 1 to 365 days, got {day}")
            previous = day
        if self.cancel_after_days is not None and not 0 <= self.cancel_after_days <= 365:
            raise InvalidValue("cancel_after_days", f"must be 0 to 365, got {self.cancel_after_days}")


def due_at(issued_at: datetime, terms: PaymentTerms) -> datetime:
    return issued_at + timedelta(days=terms.net_days)


def is_overdue(status: InvoiceStatus, issued_at: datetime | None, now: datetime, terms: PaymentTerms) -> bool:
    """A PENDING invoice at or past its due instant."""
    return status is S.PENDING and issued_at is not None and now >= due_at(issued_at, terms)


def next_retry_at(first_failure_at: datetime, failed_attempts: int, terms: PaymentTerms) -> datetime | None:
    """When to charge again after ``failed_attempts`` failures (the first at ``first_failure_at``);
    None once the schedule is used up."""
    if failed_attempts < 1 or failed_attempts > len(terms.retry_days):
        return None
    return first_failure_at + timedelta(days=terms.retry_days[failed_attempts - 1])


def cancel_at(past_due_since: datetime, terms: PaymentTerms) -> datetime | None:
    """When a PAST_DUE subscription is canceled under the terms (None: it stays PAST_DUE)."""
    if terms.cancel_after_days is None:
        return None
    return past_due_since + timedelta(days=terms.cancel_after_days)
