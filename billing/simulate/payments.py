"""Payment outcomes in a simulation that states them (``attach_payment_method`` actions or
``payment_terms``; without either, invoices stay as finalized, as before payments existed): each
finalized invoice of a subscription with a method is charged through the DUMMY provider (the
method's token chooses the outcome, billing/payments/providers/dummy.py), a failure is retried on
the tenant's schedule, the last failure makes the subscription PAST_DUE and the terms may cancel it
(immediately: the partial period is invoiced), and an unpaid invoice becomes OVERDUE after its net
days, all on the simulation's test clock. The decisions are the engine's
(invoicing/engine/lifecycle.py), as the payment worker's are on the ledger; the simulation keeps
the attempts and statuses itself and prints them, it does not write the ledger's payment tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from billing.payments.providers.dummy import DummyProvider
from invoicing.engine.lifecycle import (
    PAYABLE,
    Payable,
    PaymentTerms,
    apply_payment,
    cancel_at,
    due_at,
    is_overdue,
    next_retry_at,
    transition,
)
from invoicing.engine.model import Invoice, InvoiceStatus
from invoicing.engine.payments import AttemptStatus, ChargeRequest, attempt_idempotency_key
from invoicing.engine.render import rfc3339
from invoicing.ports import ProviderUnavailable

RESEND_AFTER = timedelta(hours=1)
"""When a provider did not answer, the attempt is sent again (same key) this much later."""


class SimulatedPayments:
    """Charges, retries, overdue and cancellation of one simulation; ``invoices`` is the
    simulation's own list (paid and overdue invoices are replaced in it)."""

    def __init__(
        self,
        tenant_id: str,
        terms: PaymentTerms,
        enabled: bool,
        invoices: list[Invoice],
        schedule: Callable[[datetime, tuple[Any, ...]], None],
        cancel_now: Callable[[str, datetime], None],
    ) -> None:
        self.tenant_id = tenant_id
        self.terms = terms
        self.enabled = enabled
        self.invoices = invoices
        self.schedule = schedule
        self.cancel_now = cancel_now
        self.provider = DummyProvider(delay=0)
        self.methods: dict[str, str] = {}
        self.attempts: list[dict[str, Any]] = []
        self.statuses: dict[str, str] = {}
        self.failures: dict[int, tuple[datetime, int]] = {}
        self.charged: set[int] = set()  # invoices charged at least once, or with a charge queued

    def finalized(self, index: int, now: datetime) -> None:
        invoice = self.invoices[index]
        if not self.enabled or invoice.status is not InvoiceStatus.PENDING or invoice.issued_at is None:
            return
        self.schedule(due_at(invoice.issued_at, self.terms), ("overdue", index))
        if invoice.subscription_id in self.methods and self.statuses.get(invoice.subscription_id) != "CANCELED":
            self._queue(index, 1, now)

    def attach(self, subscription_id: str, token: str, now: datetime) -> None:
        """The subscription's default method from ``now``: its unpaid invoices never charged are charged."""
        self.methods[subscription_id] = token
        for index, invoice in enumerate(self.invoices):
            if invoice.subscription_id == subscription_id and invoice.status in PAYABLE and index not in self.charged:
                self._queue(index, 1, now)

    def _queue(self, index: int, attempt: int, at: datetime) -> None:
        self.charged.add(index)
        self.schedule(at, ("charge", index, attempt))

    def run(self, payload: tuple[Any, ...], now: datetime) -> None:
        kind = payload[0]
        if kind == "charge":
            self._charge(payload[1], payload[2], now)
        elif kind == "overdue":
            invoice = self.invoices[payload[1]]
            if is_overdue(invoice.status, invoice.issued_at, now, self.terms):
                self.invoices[payload[1]] = replace(invoice, status=transition(invoice.status, InvoiceStatus.OVERDUE))
        elif self.statuses.get(payload[1]) == "PAST_DUE":  # cancel, if nothing paid meanwhile
            self.statuses[payload[1]] = "CANCELED"
            self.cancel_now(payload[1], now)

    def _charge(self, index: int, number: int, now: datetime) -> None:
        invoice = self.invoices[index]
        token = self.methods.get(invoice.subscription_id)
        if invoice.status not in PAYABLE or invoice.amount_due.amount <= 0 or token is None:
            return
        assert invoice.invoice_number is not None
        key = attempt_idempotency_key(self.tenant_id, invoice.invoice_number, number)
        request = ChargeRequest(key, invoice.amount_due, token, invoice.subscription_id, invoice.invoice_number, "")
        record = {"invoice_number": invoice.invoice_number, "attempt_number": number, "at": rfc3339(now)}
        try:
            answer = self.provider.charge(request)
        except ProviderUnavailable:
            self.attempts.append({**record, "status": "UNAVAILABLE"})
            self._queue(index, number, now + RESEND_AFTER)
            return
        self.attempts.append({**record, "status": str(answer.status)})
        if answer.status is AttemptStatus.SUCCEEDED:
            paid = apply_payment(Payable(invoice.status, invoice.amount_paid, invoice.amount_due), invoice.amount_due)
            self.invoices[index] = replace(
                invoice, status=paid.status, amount_paid=paid.amount_paid, amount_due=paid.amount_due
            )
            if self.statuses.get(invoice.subscription_id) == "PAST_DUE":
                self.statuses[invoice.subscription_id] = "ACTIVE"
        elif answer.status is AttemptStatus.FAILED:
            first, failed = self.failures.get(index, (now, 0))
            self.failures[index] = (first, failed + 1)
            retry = next_retry_at(first, failed + 1, self.terms)
            if retry is not None:
                self._queue(index, number + 1, retry)
                return
            self.statuses[invoice.subscription_id] = "PAST_DUE"
            cancel = cancel_at(now, self.terms)
            if cancel is not None:
                self.schedule(cancel, ("cancel", invoice.subscription_id))
        # PROCESSING: the outcome would come by webhook, which a simulation does not receive
