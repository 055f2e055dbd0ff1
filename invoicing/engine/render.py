"""Invoices as plain data: the JSON of ``billing simulate``, the ``invoice.finalized`` event, the API."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from invoicing.engine.model import Invoice, InvoiceLineItem
from rating.numbers import format_decimal


def rfc3339(instant: datetime) -> str:
    """UTC with a ``Z``; milliseconds only when there are some."""
    return _utc_text(instant.astimezone(UTC))


def rfc3339_exact(instant: datetime) -> str:
    """UTC with a ``Z`` and every microsecond there is, so the text reads back as the same instant."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def _utc_text(utc: datetime) -> str:
    """Cached on the UTC instant (a billing run renders the same few instants for every invoice).
    Not on the given datetime: two of one zone either side of a fold compare equal."""
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond // 1000:03d}"
    return text + "Z"


def line_to_dict(line: InvoiceLineItem) -> dict[str, Any]:
    return {
        "type": str(line.type),
        "description": line.description,
        "metric_code": line.metric_code,
        "quantity": None if line.quantity is None else format_decimal(line.quantity),
        "unit_price": None if line.unit_price is None else format_decimal(line.unit_price),
        "amount": line.amount.amount,
        "metadata": dict(line.metadata),
    }


def invoice_to_dict(invoice: Invoice) -> dict[str, Any]:
    return {
        "tenant_id": invoice.tenant_id,
        "subscription_id": invoice.subscription_id,
        "invoice_number": invoice.invoice_number,
        "status": str(invoice.status),
        "currency_code": invoice.currency_code,
        "plan_code": invoice.plan_code,
        "billing_period_start": rfc3339(invoice.period.start),
        "billing_period_end": rfc3339(invoice.period.end),
        "issued_at": None if invoice.issued_at is None else rfc3339(invoice.issued_at),
        "line_items": [line_to_dict(line) for line in invoice.line_items],
        "subtotal": invoice.subtotal.amount,
        "discount_total": invoice.discount_total.amount,
        "tax_total": invoice.tax_total.amount,
        "total": invoice.total.amount,
        "credits_applied": invoice.credits_applied.amount,
        "amount_paid": invoice.amount_paid.amount,
        "amount_due": invoice.amount_due.amount,
        "metadata": dict(invoice.metadata),
    }
