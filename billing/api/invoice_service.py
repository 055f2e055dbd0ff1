"""``smallbiznis.invoice.v1.InvoiceService``: the ledger's invoices, read-only. An invoice's ``id``
is the ledger's row id. Tax lines are in ``line_items`` (type TAX, rate and region in their
metadata); the ``taxes`` breakdown is not filled. GetInvoicePdf draws the invoice (billing/pdf/)
into the server's PDF directory and answers its path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from billing.api import wire
from billing.api.paging import decode_token, encode_token, page_size
from invoicing.engine.model import Invoice, InvoiceLineItem, InvoiceStatus
from invoicing.ports import ApiLedger, StoredInvoice
from rating.money import Money
from rating.numbers import format_decimal
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2, invoice_pb2_grpc

MAX_ID = 2**63 - 1
Generate = Callable[[str, invoice_pb2.GenerateInvoiceForSubscriptionRequest, Any], invoice_pb2.Invoice]
"""The invoice of the tenant's request (billing/api/generate.py); aborts the call on errors."""
WritePdf = Callable[[str, int], Path | None]
"""The path of the tenant's invoice's freshly drawn PDF, None when the tenant has no such invoice
(billing/pdf/documents.py InvoicePdfFiles.write); raises BillingError when it cannot be drawn."""


def _metadata(values: dict[str, Any]) -> dict[str, str]:
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def _line(invoice_id: str, line: InvoiceLineItem) -> invoice_pb2.InvoiceLineItem:
    message = invoice_pb2.InvoiceLineItem(
        invoice_id=invoice_id,
        type=f"INVOICE_LINE_ITEM_TYPE_{line.type.value}",
        description=line.description,
        amount=wire.money(line.amount),
        metric_code=line.metric_code or "",
        metadata=_metadata(line.metadata),
    )
    if line.quantity is not None:
        message.quantity = format_decimal(line.quantity)
    if line.unit_price is not None:
        message.unit_price = format_decimal(line.unit_price)
    return message


def invoice_message(stored: StoredInvoice) -> invoice_pb2.Invoice:
    message = draft_message(stored.invoice, str(stored.id))
    currency = stored.invoice.currency_code
    message.amount_credited.CopyFrom(wire.money(Money(stored.amount_credited, currency)))
    message.amount_refunded.CopyFrom(wire.money(Money(stored.amount_refunded, currency)))
    if stored.paid_at is not None:
        message.paid_at.CopyFrom(wire.timestamp(stored.paid_at))
    if stored.due_at is not None:
        message.due_at.CopyFrom(wire.timestamp(stored.due_at))
    return message


def draft_message(invoice: Invoice, invoice_id: str = "") -> invoice_pb2.Invoice:
    """An invoice on the wire; a draft (not stored) has no id."""
    version = next(
        (line.metadata.get("plan_version") for line in invoice.line_items if "plan_version" in line.metadata), None
    )
    message = invoice_pb2.Invoice(
        id=invoice_id,
        tenant_id=invoice.tenant_id,
        subscription_id=invoice.subscription_id,
        invoice_number=invoice.invoice_number or "",
        status=f"INVOICE_STATUS_{invoice.status.value}",
        billing_period_start=wire.timestamp(invoice.period.start),
        billing_period_end=wire.timestamp(invoice.period.end),
        line_items=[_line(invoice_id, line) for line in invoice.line_items],
        subtotal=wire.money(invoice.subtotal),
        discount_total=wire.money(invoice.discount_total),
        tax_total=wire.money(invoice.tax_total),
        total=wire.money(invoice.total),
        credits_applied=wire.money(invoice.credits_applied),
        amount_paid=wire.money(invoice.amount_paid),
        amount_due=wire.money(invoice.amount_due),
        currency_code=invoice.currency_code,
        plan_code=invoice.plan_code,
        plan_version=int(version) if version and str(version).isdigit() else 0,
        metadata=_metadata(invoice.metadata),
    )
    if invoice.issued_at is not None:
        message.issued_at.CopyFrom(wire.timestamp(invoice.issued_at))
    return message


def _invoice_id(text: str, context: Any) -> int | None:
    """The ledger id a request names; None when it names none (NOT_FOUND, as for another tenant's)."""
    if not text:
        wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
    number = int(text) if text.isdigit() and len(text) <= 19 else None
    return None if number is None or number > MAX_ID else number


class InvoiceServicer(invoice_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, api: ApiLedger, generate: Generate | None = None, write_pdf: WritePdf | None = None) -> None:
        self.api = api
        self.generate = generate
        self.write_pdf = write_pdf

    def GenerateInvoiceForSubscription(
        self, request: invoice_pb2.GenerateInvoiceForSubscriptionRequest, context: Any
    ) -> invoice_pb2.GenerateInvoiceForSubscriptionResponse:
        """The period's invoice, finalized now (or found finalized), or with ``dry_run`` stored nowhere."""
        tenant = wire.tenant(context)
        if self.generate is None:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, "the usage store is not open in this server")
        invoice = self.generate(tenant, request, context)
        return invoice_pb2.GenerateInvoiceForSubscriptionResponse(invoice=invoice)

    def GetInvoice(self, request: invoice_pb2.GetInvoiceRequest, context: Any) -> invoice_pb2.GetInvoiceResponse:
        tenant = wire.tenant(context)
        number = _invoice_id(request.id, context)
        stored = None if number is None else self.api.invoice(tenant, number)
        if stored is None:
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"id: no invoice {request.id!r}")
        return invoice_pb2.GetInvoiceResponse(invoice=invoice_message(stored))

    def GetInvoicePdf(
        self, request: invoice_pb2.GetInvoicePdfRequest, context: Any
    ) -> invoice_pb2.GetInvoicePdfResponse:
        """The invoice drawn anew; ``pdf_url`` is its path on the server (no ``expires_at``: the
        file stays until the next request for it replaces it)."""
        tenant = wire.tenant(context)
        number = _invoice_id(request.id, context)
        if self.write_pdf is None:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, "this server has no PDF directory (serve --pdf-dir)")
        path = None
        if number is not None:
            with wire.errors_as_status(context, grpc.StatusCode.FAILED_PRECONDITION):
                path = self.write_pdf(tenant, number)
        if path is None:
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"id: no invoice {request.id!r}")
        return invoice_pb2.GetInvoicePdfResponse(pdf_url=str(path))

    def ListInvoices(self, request: invoice_pb2.ListInvoicesRequest, context: Any) -> invoice_pb2.ListInvoicesResponse:
        tenant = wire.tenant(context, request.tenant_id)
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (int,))
        status = None
        if request.status:
            status = InvoiceStatus(invoice_pb2.InvoiceStatus.Name(request.status).removeprefix("INVOICE_STATUS_"))
        found = self.api.invoices(
            tenant, request.subscription_id or None, status, None if after is None else int(after[0]), limit + 1
        )
        token = encode_token((found[limit - 1].id,)) if len(found) > limit else ""
        return invoice_pb2.ListInvoicesResponse(
            invoices=[invoice_message(i) for i in found[:limit]], next_page_token=token
        )
