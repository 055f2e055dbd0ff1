"""Compose a draft invoice: charges → discount → tax → credit, in that order, lines rounded once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from invoicing.engine.credit import apply_credit
from invoicing.engine.discount import Coupon, discount_line
from invoicing.engine.model import SUBTOTAL_TYPES, Invoice, InvoiceLineItem, InvoiceStatus
from invoicing.engine.numbering import invoice_number
from invoicing.engine.tax import TaxRule, tax_lines
from rating.errors import InvalidValue
from rating.money import Money
from rating.periods import Period


def _sum(lines: Sequence[InvoiceLineItem], currency: str) -> Money:
    return sum((line.amount for line in lines), Money.zero(currency))


def compose_invoice(
    *,
    tenant_id: str,
    subscription_id: str,
    plan_code: str,
    period: Period,
    currency: str,
    charges: Sequence[InvoiceLineItem],
    coupon: Coupon | None,
    tax_rules: Sequence[TaxRule],
    tax_inclusive: bool,
    credit_available: Money,
    amount_paid: Money | None = None,
    metadata: dict[str, str] | None = None,
) -> Invoice:
    """A DRAFT invoice. ``charges`` are RECURRING, USAGE and ADJUSTMENT lines; ``tax_rules`` already
    chosen for the subscription's region; ``credit_available`` is what credits may cover;
    ``metadata`` the invoice's own (empty when None)."""
    for index, line in enumerate(charges):
        if line.type not in SUBTOTAL_TYPES:
            raise InvalidValue(f"charges[{index}].type", f"{line.type} is not a charge")
        if line.amount.currency != currency:
            raise InvalidValue(f"charges[{index}].amount", f"{line.amount.currency} on a {currency} invoice")
    subtotal = _sum(charges, currency)
    lines = list(charges)
    discount = discount_line(coupon, subtotal) if coupon is not None else None
    if discount is not None:
        lines.append(discount)
    discount_total = -discount.amount if discount is not None else Money.zero(currency)
    taxed_base = subtotal - discount_total
    taxes = tax_lines(taxed_base, tax_rules, tax_inclusive) if taxed_base.amount > 0 else []
    lines.extend(taxes)
    tax_total = _sum(taxes, currency)
    total = taxed_base if tax_inclusive else taxed_base + tax_total
    paid = amount_paid or Money.zero(currency)
    credits_applied, _ = apply_credit(credit_available, total - paid)
    amount_due = Money(max(0, (total - credits_applied - paid).amount), currency)
    return Invoice(
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        period=period,
        currency_code=currency,
        line_items=tuple(lines),
        subtotal=subtotal,
        discount_total=discount_total,
        tax_total=tax_total,
        total=total,
        credits_applied=credits_applied,
        amount_paid=paid,
        amount_due=amount_due,
        plan_code=plan_code,
        metadata={} if metadata is None else metadata,
    )


def finalize(invoice: Invoice, sequence: int, finalized_at: datetime) -> Invoice:
    """DRAFT → PENDING (or PAID when nothing is due), numbered. A finalized invoice never changes."""
    if invoice.status is not InvoiceStatus.DRAFT:
        raise InvalidValue("status", f"only a DRAFT invoice is finalized, this one is {invoice.status}")
    if sequence < 1:
        raise InvalidValue("sequence", f"invoice sequences start at 1, got {sequence}")
    status = InvoiceStatus.PAID if invoice.amount_due.amount == 0 else InvoiceStatus.PENDING
    return replace(
        invoice, status=status, invoice_number=invoice_number(sequence, finalized_at), issued_at=finalized_at
    )
