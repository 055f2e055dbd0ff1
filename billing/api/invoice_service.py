"""``smallbiznis.invoice.v1.InvoiceService``: the ledger's invoices, read-only. An invoice's ``id``
is the ledger's row id. Tax lines are in ``line_items`` (type TAX, rate and region in their
metadata); the ``taxes`` breakdown is not filled."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc

from billing.api import wire
from billing.api.paging import decode_token, encode_token, page_size
from invoicing.engine.model import Invoice, InvoiceLineItem, InvoiceStatus
from invoicing.ports import ApiLedger, StoredInvoice
from rating.numbers import format_decimal
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2, invoice_pb2_grpc

MAX_ID = 2**63 - 1
Generate = Callable[[str, invoice_pb2.GenerateInvoiceForSubscriptionRequest, Any], invoice_pb2.Invoice]
"""The dry-run invoice of the tenant's request (billing/api/dry_run.py); aborts the call on errors."""


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
    if stored.paid_at is not None:
        message.paid_at.CopyFrom(wire.timestamp(stored.paid_at))
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


class InvoiceServicer(invoice_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, api: ApiLedger, generate: Generate | None = None) -> None:
        self.api = api
        self.generate = generate

    def GenerateInvoiceForSubscription(
        self, request: invoice_pb2.GenerateInvoiceForSubscriptionRequest, context: Any
    ) -> invoice_pb2.GenerateInvoiceForSubscriptionResponse:
        """A dry run only: the invoice the loop would finalize for the period, stored nowhere."""
        tenant = wire.tenant(context)
        if not request.dry_run:
            wire.abort(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                "dry_run: only a dry run is served; the loop (billing worker) finalizes each period as its "
                "calendar closes it, and an invoice stored here would take the period from it",
            )
        if self.generate is None:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, "the usage store is not open in this server")
        invoice = self.generate(tenant, request, context)
        return invoice_pb2.GenerateInvoiceForSubscriptionResponse(invoice=invoice)

    def GetInvoice(self, request: invoice_pb2.GetInvoiceRequest, context: Any) -> invoice_pb2.GetInvoiceResponse:
        tenant = wire.tenant(context)
        if not request.id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
        number = int(request.id) if request.id.isdigit() and len(request.id) <= 19 else None
        stored = None if number is None or number > MAX_ID else self.api.invoice(tenant, number)
        if stored is None:
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"id: no invoice {request.id!r}")
        return invoice_pb2.GetInvoiceResponse(invoice=invoice_message(stored))

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
