"""``GenerateInvoiceForSubscription``: the invoice of an ended period of the subscription, rated
from the usage store (``InvoiceService.rate``) with the ADJUSTMENT lines of every finalized period
whose usage changed since it was billed (``late_usage``), then either finalized through the invoice
worker's own step (``InvoiceFinalizer.finalize``: composed, numbered from the tenant's gapless
sequence, billed usage and ``invoice.finalized`` outbox row in one ledger transaction) or, with
``dry_run``, composed the same way and stored nowhere (``preview``: no number, no credit used, no
outbox row). A period finalized already (by an earlier call or by the loop) answers its stored
invoice: at most one invoice per (subscription, period), whoever finalizes it first.

The periods are the subscription's calendar replayed from its revision history in the ledger
(billing/api/history.py): the periods the loop closes, cut where a plan change or cancel cut them,
each rated on the plan of its own revision, as the loop rates it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc

from billing.api import wire
from billing.api.history import subscription_periods
from billing.api.invoice_service import draft_message, invoice_message
from billing.api.owned import owned_subscription
from billing.api.usage_access import unavailable
from invoicing.engine.model import Invoice
from invoicing.engine.subscriptions import ClosedPeriod
from invoicing.ports import ApiLedger, Ledger, StoredInvoice, UsageReader
from invoicing.service import InvoiceService
from rating.errors import InvalidValue
from rating.periods import Period
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2


def ended_period(periods: list[tuple[ClosedPeriod, bool]], wanted: Period | None) -> ClosedPeriod | None:
    """The ended period ``wanted`` of the calendar (the latest ended one when None); None when
    there is no such period."""
    ended = [closed for closed, is_open in periods if not is_open]
    if wanted is None:
        return ended[-1] if ended else None
    return next((closed for closed in ended if closed.period == wanted), None)


def _wanted(request: invoice_pb2.GenerateInvoiceForSubscriptionRequest) -> Period | None:
    given = [request.HasField(name) for name in ("period_start", "period_end")]
    if not any(given):
        return None
    if not all(given):
        raise InvalidValue("period_end" if given[0] else "period_start", "give both ends of the period, or neither")
    start, end = wire.instant(request.period_start, "period_start"), wire.instant(request.period_end, "period_end")
    if end <= start:
        raise InvalidValue("period_end", "must be after period_start")
    return Period(start, end)


class GenerateInvoice:
    """The generated invoices of ``billing serve`` (``usage`` None: UNAVAILABLE, ``problem`` says why)."""

    def __init__(
        self, ledger: Ledger, api: ApiLedger, usage: UsageReader | None, problem: str, now: Callable[[], datetime]
    ) -> None:
        self.ledger, self.api, self.usage, self.problem, self.now = ledger, api, usage, problem, now

    def __call__(
        self, tenant: str, request: invoice_pb2.GenerateInvoiceForSubscriptionRequest, context: Any
    ) -> invoice_pb2.Invoice:
        if not request.subscription_id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id: is required")
        with wire.errors_as_status(context):
            wanted = _wanted(request)
        invoice = self.period_invoice(context, tenant, request.subscription_id, wanted, store=not request.dry_run)
        return draft_message(invoice) if isinstance(invoice, Invoice) else invoice_message(invoice)

    def period_invoice(
        self,
        context: Any,
        tenant: str,
        subscription_id: str,
        wanted: Period | None,
        *,
        store: bool,
        check: Callable[[Invoice], None] | None = None,
    ) -> StoredInvoice | Invoice:
        """The invoice of the ended period ``wanted`` (the latest when None): finalized (``store``),
        else a draft stored nowhere; the stored one when the period was finalized already.
        ``check`` sees the invoice (the stored one too) before it is answered or stored; a
        BillingError it raises answers FAILED_PRECONDITION, nothing stored."""
        owned = owned_subscription(context, self.ledger, tenant, subscription_id)
        now = self.now()
        closed = ended_period(subscription_periods(self.ledger, subscription_id, now), wanted)
        if closed is None:
            field = "period_start" if wanted is not None else "subscription_id"
            wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"{field}: no such billing period has ended")
        with wire.errors_as_status(context, grpc.StatusCode.FAILED_PRECONDITION):
            stored = self.stored(tenant, closed)
            if stored is not None:
                if check is not None:
                    check(stored.invoice)
                return stored
            if self.usage is None:
                unavailable(context, self.problem)
            pricing = InvoiceService(self.ledger, self.usage, owned.terms)
            result = pricing.rate(closed.subscription, closed.plan, closed.period, closed.share, now)
            late = pricing.late_usage(closed.subscription, None)
            if not store:
                draft = pricing.preview(closed, result, late, now)
                if check is not None:
                    check(draft)
                return draft
            try:
                pricing.finalize(closed, result, late, now, check)
            except InvalidValue:
                if self.stored(tenant, closed) is None:  # not the race lost to the loop or a twin call
                    raise
            stored = self.stored(tenant, closed)
            assert stored is not None  # finalized just now, or by whoever won the race to it
            if check is not None:
                check(stored.invoice)  # the winner of a race may have composed another invoice
        return stored

    def stored(self, tenant: str, closed: ClosedPeriod) -> StoredInvoice | None:
        """The period's finalized invoice, with its id (a subscription has one invoice a period)."""
        key = (closed.subscription.id, closed.period.start)
        with self.ledger.session() as session:
            if session.find_invoice(*key) is None:
                return None
        after = None
        while page := self.api.invoices(tenant, key[0], None, after, 500):
            found = next((stored for stored in page if stored.invoice.key == key), None)
            if found is not None:
                return found
            after = page[-1].id
        return None
