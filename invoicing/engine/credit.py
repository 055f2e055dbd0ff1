"""Credits: a prepaid balance (BALANCE credit notes, trial balance) reduces what is due, never below
zero; ADJUSTMENT and REFUND notes act on one finalized invoice (``credit_invoice``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from invoicing.engine.model import InvoiceStatus
from rating.errors import BillingError, InvalidValue
from rating.money import Money


class CreditType(StrEnum):
    ADJUSTMENT = "ADJUSTMENT"
    REFUND = "REFUND"
    BALANCE = "BALANCE"


@dataclass(frozen=True, slots=True)
class CreditNote:
    subscription_id: str
    type: CreditType
    amount: Money
    created_at: datetime
    reason: str = ""
    invoice_number: str | None = None


def apply_credit(balance: Money, due: Money) -> tuple[Money, Money]:
    """(applied, remaining balance): as much of the balance as the due amount takes."""
    applied = Money(max(0, min(balance.amount, due.amount)), due.currency)
    return applied, balance - applied


class InvoiceStateError(BillingError):
    """The invoice's status does not allow the credit note (e.g. an ADJUSTMENT of a PAID invoice)."""


ADJUSTABLE = frozenset({InvoiceStatus.PENDING, InvoiceStatus.OVERDUE})
REFUNDABLE = frozenset({InvoiceStatus.PAID})


@dataclass(frozen=True, slots=True)
class InvoiceBalance:
    """What a finalized invoice owes after its credit notes: ``amount_credited`` is the ADJUSTMENT
    notes taken off ``amount_due``, ``amount_refunded`` the REFUND notes returned of ``amount_paid``.
    Its lines and totals never change; only these amounts and the status move."""

    status: InvoiceStatus
    amount_paid: Money
    amount_due: Money
    amount_credited: Money
    amount_refunded: Money


def credit_invoice(balance: InvoiceBalance, note_type: CreditType, amount: Money) -> InvoiceBalance:
    """The invoice after a credit note of ``amount`` (> 0) against it.

    ADJUSTMENT (a PENDING or OVERDUE invoice): reduces ``amount_due``, at most to zero; an invoice
    that owes nothing more is PAID. REFUND (a PAID invoice): money returned of what was paid, at
    most what is left of ``amount_paid``; fully refunded, the invoice is REFUNDED. BALANCE notes are
    prepaid balance for later invoices, never against one invoice."""
    if amount.currency != balance.amount_due.currency:
        raise InvalidValue("amount.currency_code", f"must be the invoice's currency {balance.amount_due.currency}")
    if amount.amount <= 0:
        raise InvalidValue("amount.units", f"must be above 0, got {amount.amount}")
    if note_type is CreditType.ADJUSTMENT:
        if balance.status not in ADJUSTABLE:
            raise InvoiceStateError(
                "invoice_id",
                f"the invoice is {balance.status}: an ADJUSTMENT reduces what an unpaid invoice owes "
                "(REFUND returns money paid, BALANCE credits later invoices)",
            )
        if amount.amount > balance.amount_due.amount:
            raise InvalidValue("amount.units", f"more than the invoice's amount due {balance.amount_due.amount}")
        due = balance.amount_due - amount
        status = InvoiceStatus.PAID if due.amount == 0 else balance.status
        return replace(balance, status=status, amount_due=due, amount_credited=balance.amount_credited + amount)
    if note_type is CreditType.REFUND:
        refundable = balance.amount_paid - balance.amount_refunded
        if balance.status not in REFUNDABLE or refundable.amount == 0:
            raise InvoiceStateError(
                "invoice_id",
                f"the invoice is {balance.status} with {refundable.amount} of its payments left to refund: "
                "a REFUND returns money paid on a PAID invoice",
            )
        if amount.amount > refundable.amount:
            raise InvalidValue("amount.units", f"more than the invoice's refundable amount {refundable.amount}")
        refunded = balance.amount_refunded + amount
        status = InvoiceStatus.REFUNDED if refunded == balance.amount_paid else balance.status
        return replace(balance, status=status, amount_refunded=refunded)
    raise InvalidValue("type", "a BALANCE note is prepaid balance for later invoices, not against one invoice")
