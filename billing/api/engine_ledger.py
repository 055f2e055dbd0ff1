"""InvoiceEngineService's steps that touch the ledger, mapped onto what the ledger really keeps.

- ``BuildInvoice``: the invoice of one ended period of the subscription's calendar, composed as
  finalization composes it and stored nowhere (a dry-run ``GenerateInvoiceForSubscription``).
- ``FinalizeInvoice``: the ledger finalizes only invoices it composes from its own rating, so the
  request's components are checked against that composition, inside the finalizing transaction:
  equal, the period's invoice is finalized (numbered, outbox row) exactly as
  ``GenerateInvoiceForSubscription`` does; different, FAILED_PRECONDITION names the first field
  that differs and nothing is stored or numbered. A client that chains BuildChargesFromRating,
  ApplyDiscount, ApplyTax and ApplyCredit over the period's rating gets equal components.
- ``GenerateInvoiceNumber``: the number the tenant's next finalized invoice gets (if finalized at
  ``at`` and no other one first). Nothing is taken: a number taken without its invoice would leave
  a gap in the gapless sequence.
- ``OpenBillingPeriod`` / ``CloseBillingPeriod``: billing periods are not rows; they follow from
  the subscription's calendar (billing/api/billing_service.py). Opening answers the calendar's
  period holding now, as asked; closing an ended period finalizes its invoice (INVOICED). A period
  closes at its end: ChangeSubscriptionPlan and CancelSubscription are what cut one early.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import grpc

from billing.api import engine_wire as ew
from billing.api import wire
from billing.api.billing_service import INVOICED, OPEN, periods
from billing.api.generate import GenerateInvoice
from billing.api.owned import Owned, owned_subscription
from invoicing.engine.model import SUBTOTAL_TYPES, Invoice, InvoiceLineItem, LineType
from invoicing.engine.numbering import invoice_number
from invoicing.engine.render import rfc3339
from invoicing.ports import ApiLedger, Ledger, StoredInvoice
from rating.errors import BillingError, InvalidValue
from rating.money import Money
from rating.periods import Period
from schemas.generated.smallbiznis.billing.v1 import billing_pb2
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2 as E


class ComponentsDiffer(BillingError):
    """A FinalizeInvoice request whose components are not the invoice the ledger composes."""


def _line_key(line: InvoiceLineItem) -> tuple[Any, ...]:
    """What must agree between a client's component and the ledger's line (not the wording)."""
    return (line.type, line.metric_code or None, line.amount, line.quantity, line.unit_price)


def _period(request: Any, start: str, end: str) -> Period:
    for name in (start, end):
        if not request.HasField(name):
            raise InvalidValue(name, "is required")
    period = Period(wire.instant(getattr(request, start), start), wire.instant(getattr(request, end), end))
    if period.end <= period.start:
        raise InvalidValue(end, f"must be after {start}")
    return period


class EngineLedgerSteps:
    """The ledger's side of InvoiceEngineService (``generate`` None: no usage store, UNAVAILABLE)."""

    def __init__(
        self, ledger: Ledger, api: ApiLedger, generate: GenerateInvoice | None, now: Callable[[], datetime]
    ) -> None:
        self.ledger, self.api, self.generate, self.now = ledger, api, generate, now

    def _generate(self, context: Any) -> GenerateInvoice:
        if self.generate is None:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, "the usage store is not open in this server")
        return self.generate

    def build_invoice(self, request: E.BuildInvoiceRequest, context: Any) -> E.BuildInvoiceResponse:
        tenant = wire.tenant(context, request.tenant_id)
        owned_subscription(context, self.ledger, tenant, request.subscription_id)
        with wire.errors_as_status(context):
            period = _period(request, "billing_period_start", "billing_period_end")
        found = self._generate(context).period_invoice(context, tenant, request.subscription_id, period, store=False)
        invoice = found.invoice if isinstance(found, StoredInvoice) else found
        return E.BuildInvoiceResponse(
            line_items=[ew.line_out(line) for line in invoice.line_items],
            subtotal=wire.money(invoice.subtotal),
            discount_total=wire.money(invoice.discount_total),
            tax_total=wire.money(invoice.tax_total),
            total=wire.money(invoice.total),
            billing_period_start=wire.timestamp(invoice.period.start),
            billing_period_end=wire.timestamp(invoice.period.end),
        )

    def finalize_invoice(self, request: E.FinalizeInvoiceRequest, context: Any) -> E.FinalizeInvoiceResponse:
        tenant = wire.tenant(context, request.tenant_id)
        owned = owned_subscription(context, self.ledger, tenant, request.subscription_id)
        currency = owned.plan.currency_code
        with wire.errors_as_status(context):
            period = _period(request, "billing_period_start", "billing_period_end")
            if request.currency_code != currency:
                raise InvalidValue("currency_code", f"must be the subscription's plan currency {currency}")
            given = {
                "line_items": ew.lines_in(request.line_items, "line_items", currency),
                "discounts": ew.lines_in(request.discounts, "discounts", currency),
                "tax_lines": ew.lines_in(request.tax_lines, "tax_lines", currency),
            }
            totals = {
                name: ew.required_money(request, name, currency)
                for name in ("subtotal", "discount_total", "tax_total", "total")
            }
            totals["credits_applied"] = Money.zero(currency)
            if request.HasField("credits_applied"):
                totals["credits_applied"] = ew.money_in(request.credits_applied, "credits_applied", currency)

        def check(invoice: Invoice) -> None:
            composed = {
                "line_items": [line for line in invoice.line_items if line.type in SUBTOTAL_TYPES],
                "discounts": [line for line in invoice.line_items if line.type is LineType.DISCOUNT],
                "tax_lines": [line for line in invoice.line_items if line.type is LineType.TAX],
            }
            for name, lines in composed.items():
                _same_lines(name, given[name], lines)
            for name, amount in totals.items():
                own = getattr(invoice, name)
                if own != amount:
                    raise ComponentsDiffer(
                        name, f"the ledger composes {own.amount} for this period, the request says {amount.amount}"
                    )

        found = self._generate(context).period_invoice(
            context, tenant, request.subscription_id, period, store=True, check=check
        )
        assert isinstance(found, StoredInvoice)
        invoice = found.invoice
        response = E.FinalizeInvoiceResponse(
            invoice_id=str(found.id),
            invoice_number=invoice.invoice_number or "",
            total=wire.money(invoice.total),
            amount_due=wire.money(invoice.amount_due),
            status=f"INVOICE_STATUS_{invoice.status.value}",
        )
        if invoice.issued_at is not None:
            response.issued_at.CopyFrom(wire.timestamp(invoice.issued_at))
        return response

    def generate_invoice_number(
        self, request: E.GenerateInvoiceNumberRequest, context: Any
    ) -> E.GenerateInvoiceNumberResponse:
        tenant = wire.tenant(context, request.tenant_id)
        at = self.now()
        if request.HasField("at"):
            with wire.errors_as_status(context):
                at = wire.instant(request.at, "at")
        number = invoice_number(self.api.last_invoice_sequence(tenant) + 1, at)
        return E.GenerateInvoiceNumberResponse(invoice_number=number)

    def _calendar(self, context: Any, subscription_id: str) -> tuple[Owned, list[tuple[Period, bool]]]:
        owned = owned_subscription(context, self.ledger, wire.tenant(context), subscription_id)
        return owned, periods(self.ledger, owned.record.id, self.now())

    def open_billing_period(self, request: E.OpenBillingPeriodRequest, context: Any) -> E.OpenBillingPeriodResponse:
        owned, found = self._calendar(context, request.subscription_id)
        with wire.errors_as_status(context):
            wanted = _period(request, "period_start", "period_end")
        current = next((period for period, is_open in found if is_open), None)
        if current is None or current.start != wanted.start:
            holding = "no period" if current is None else f"[{rfc3339(current.start)}, {rfc3339(current.end)})"
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"period_start: only the period holding now is open, {holding}; periods follow the subscription's "
                "calendar",
            )
        if current.end != wanted.end:
            message = f"period_end: the open period ends at {rfc3339(current.end)}"
            wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, message)
        return E.OpenBillingPeriodResponse(billing_period=_period_message(owned, current, OPEN))

    def close_billing_period(self, request: E.CloseBillingPeriodRequest, context: Any) -> E.CloseBillingPeriodResponse:
        owned, found = self._calendar(context, request.subscription_id)
        period, is_open = next(
            ((p, o) for p, o in found if f"{owned.record.id}@{rfc3339(p.start)}" == request.billing_period_id),
            (None, False),
        )
        if period is None:
            message = f"billing_period_id: no billing period {request.billing_period_id!r}"
            wire.abort(context, grpc.StatusCode.NOT_FOUND, message)
        if request.HasField("closed_at"):
            with wire.errors_as_status(context):
                closed_at = wire.instant(request.closed_at, "closed_at")
            if closed_at != period.end:
                wire.abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"closed_at: a period closes at its end {rfc3339(period.end)}; ChangeSubscriptionPlan or "
                    "CancelSubscription cut one early",
                )
        if is_open:
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"billing_period_id: the period ends at {rfc3339(period.end)}; it closes then",
            )
        stored = self._generate(context).period_invoice(
            context, owned.record.subscription.tenant_id, owned.record.id, period, store=True
        )
        assert isinstance(stored, StoredInvoice)
        closed = _period_message(owned, period, INVOICED, str(stored.id))
        return E.CloseBillingPeriodResponse(billing_period=closed)


def _same_lines(field: str, given: Sequence[InvoiceLineItem], composed: Sequence[InvoiceLineItem]) -> None:
    if len(given) != len(composed):
        raise ComponentsDiffer(field, f"the ledger composes {len(composed)} lines for this period, not {len(given)}")
    for index, (mine, own) in enumerate(zip(given, composed, strict=True)):
        if _line_key(mine) != _line_key(own):
            raise ComponentsDiffer(
                f"{field}[{index}]",
                f"the ledger composes {own.type} {own.metric_code or ''} {own.amount.amount} "
                f"(quantity {own.quantity}, unit price {own.unit_price}) for this period",
            )


def _period_message(owned: Owned, period: Period, status: int, invoice_id: str = "") -> billing_pb2.BillingPeriod:
    return billing_pb2.BillingPeriod(
        id=f"{owned.record.id}@{rfc3339(period.start)}",
        subscription_id=owned.record.id,
        period_start=wire.timestamp(period.start),
        period_end=wire.timestamp(period.end),
        status=status,  # type: ignore[arg-type]
        invoice_id=invoice_id,
    )
