"""``smallbiznis.credit.v1.CreditService`` on the ledger's credit notes.

A BALANCE note adds prepaid balance to its subscription: the next finalized invoices apply it to
``amount_due`` (never below zero) and carry the rest forward, exactly as a scenario's credit note
does. ADJUSTMENT and REFUND notes act on one invoice (``invoicing.engine.credit.credit_invoice``,
docs/decisions/0010): an ADJUSTMENT takes its amount off what an unpaid invoice owes (PAID when
nothing is left), a REFUND records money returned of what a PAID invoice was paid (REFUNDED when
all of it is). ``idempotency_key`` (per subscription) makes a retry answer the note it created
rather than credit twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import grpc

from billing.api import wire
from billing.api.paging import decode_token, encode_token, page_size
from invoicing.engine.credit import CreditNote, CreditType, InvoiceStateError
from invoicing.ports import ApiLedger, Ledger, StoredCreditNote
from rating.errors import InvalidValue
from rating.limits import MAX_KEY, MAX_TEXT, bounded_text
from rating.money import Money
from schemas.generated.smallbiznis.credit.v1 import credit_pb2, credit_pb2_grpc


def credit_note_message(stored: StoredCreditNote) -> credit_pb2.CreditNote:
    note = stored.note
    return credit_pb2.CreditNote(
        id=str(stored.id),
        tenant_id=stored.tenant_id,
        invoice_id="" if stored.invoice_id is None else str(stored.invoice_id),
        subscription_id=note.subscription_id,
        type=f"CREDIT_NOTE_TYPE_{note.type.value}",
        amount=wire.money(note.amount),
        reason=note.reason,
        created_at=wire.timestamp(note.created_at),
    )


def _invoice_id(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 18 else None


class CreditServicer(credit_pb2_grpc.CreditServiceServicer):
    def __init__(self, ledger: Ledger, api: ApiLedger, now: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.api = api
        self.now = now

    def _invoice_number(self, context: Any, tenant: str, invoice_id: str, subscription_id: str | None) -> str:
        """The number of the tenant's invoice ``invoice_id`` (of ``subscription_id`` when given)."""
        number = _invoice_id(invoice_id)
        stored = None if number is None else self.api.invoice(tenant, number)
        if stored is None or (subscription_id is not None and stored.invoice.subscription_id != subscription_id):
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"invoice_id: no invoice {invoice_id!r}")
        assert stored.invoice.invoice_number is not None  # the ledger stores finalized invoices only
        return stored.invoice.invoice_number

    def _checked(self, request: credit_pb2.CreateCreditNoteRequest, currency: str) -> Money:
        """The request's amount, after the fields the ledger would refuse or drop."""
        if request.metadata:
            raise InvalidValue("metadata", "is not stored by this server yet")
        if request.reason:
            bounded_text(request.reason, "reason", MAX_TEXT)
        if request.idempotency_key:
            bounded_text(request.idempotency_key, "idempotency_key", MAX_KEY)
        if not request.HasField("amount"):
            raise InvalidValue("amount", "is required")
        if request.amount.currency_code != currency:
            raise InvalidValue("amount.currency_code", f"must be the subscription's plan currency {currency}")
        if request.amount.units <= 0:
            raise InvalidValue("amount.units", f"must be above 0, got {request.amount.units}")
        return Money(request.amount.units, currency)

    def CreateCreditNote(
        self, request: credit_pb2.CreateCreditNoteRequest, context: Any
    ) -> credit_pb2.CreateCreditNoteResponse:
        tenant = wire.tenant(context, request.tenant_id)
        if request.type == credit_pb2.CREDIT_NOTE_TYPE_UNSPECIFIED:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "type: is required")
        if request.type != credit_pb2.CREDIT_NOTE_TYPE_BALANCE:
            return self._against_invoice(tenant, request, context)
        if not request.subscription_id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id: is required")
        with self.ledger.session() as session:
            record = session.get_subscription(request.subscription_id)
            plan = None
            if record is not None and record.subscription.tenant_id == tenant:
                plan = session.get_plan(tenant, record.subscription.plan_code, record.plan_version)
        if plan is None:
            wire.abort(
                context, grpc.StatusCode.NOT_FOUND, f"subscription_id: no subscription {request.subscription_id!r}"
            )
        number = None
        if request.invoice_id:
            number = self._invoice_number(context, tenant, request.invoice_id, request.subscription_id)
        with wire.errors_as_status(context):
            amount = self._checked(request, plan.currency_code)
        note = CreditNote(request.subscription_id, CreditType.BALANCE, amount, self.now(), request.reason, number)
        stored, created = self.api.add_credit_note(tenant, note, request.idempotency_key or None)
        self._replayed(context, stored, note, created)
        return credit_pb2.CreateCreditNoteResponse(credit_note=credit_note_message(stored))

    def _against_invoice(
        self, tenant: str, request: credit_pb2.CreateCreditNoteRequest, context: Any
    ) -> credit_pb2.CreateCreditNoteResponse:
        """An ADJUSTMENT or REFUND note: it moves its invoice (``credit_invoice``) as it is stored."""
        kind = CreditType(credit_pb2.CreditNoteType.Name(request.type).removeprefix("CREDIT_NOTE_TYPE_"))
        if not request.invoice_id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invoice_id: a {kind} note is against one invoice")
        number = _invoice_id(request.invoice_id)
        stored_invoice = None if number is None else self.api.invoice(tenant, number)
        subscription_id = request.subscription_id or None
        if stored_invoice is None or subscription_id not in (None, stored_invoice.invoice.subscription_id):
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"invoice_id: no invoice {request.invoice_id!r}")
        assert number is not None
        invoice = stored_invoice.invoice
        with wire.errors_as_status(context):
            amount = self._checked(request, invoice.currency_code)
        note = CreditNote(invoice.subscription_id, kind, amount, self.now(), request.reason, invoice.invoice_number)
        with wire.errors_as_status(context):
            try:
                found = self.api.credit_invoice(tenant, number, note, request.idempotency_key or None)
            except InvoiceStateError as error:
                wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        assert found is not None  # invoices are never deleted
        stored, created = found
        self._replayed(context, stored, note, created)
        return credit_pb2.CreateCreditNoteResponse(credit_note=credit_note_message(stored))

    @staticmethod
    def _replayed(context: Any, stored: StoredCreditNote, note: CreditNote, created: bool) -> None:
        """ALREADY_EXISTS when an idempotency key found a note that is not this request's."""
        if not created and replace(stored.note, created_at=note.created_at) != note:
            wire.abort(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                "idempotency_key: used by another credit note of the subscription",
            )

    def ListCreditNotes(
        self, request: credit_pb2.ListCreditNotesRequest, context: Any
    ) -> credit_pb2.ListCreditNotesResponse:
        tenant = wire.tenant(context, request.tenant_id)
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (int,))
        number = None
        if request.invoice_id:
            number = self._invoice_number(context, tenant, request.invoice_id, None)
        found = self.api.credit_notes(
            tenant, request.subscription_id or None, number, None if after is None else int(after[0]), limit + 1
        )
        token = encode_token((found[limit - 1].id,)) if len(found) > limit else ""
        return credit_pb2.ListCreditNotesResponse(
            credit_notes=[credit_note_message(n) for n in found[:limit]], next_page_token=token
        )
