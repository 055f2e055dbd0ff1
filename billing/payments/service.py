"""Charging invoices: the application service behind ``PaymentService.ChargeInvoice``, the payment
worker, and settlement of verified provider events.

A charge is three steps, so no crash can charge twice or lose a success:

1. record the attempt PENDING with its idempotency key and commit (``begin_attempt``);
2. call the provider with that key (outside any transaction: a provider can be slow);
3. commit the answer (``record_charge``): the attempt's status, the invoice's amounts, the outbox.

A crash between 2 and 3, or a provider that does not answer (ProviderUnavailable), leaves the
attempt PENDING; the payment worker's next pass calls again with the same key and the provider
answers the charge it made. A webhook arriving before step 3 settles the attempt by its key, and
step 3's answer then changes nothing (an attempt moves forward only, and an amount is applied on
the move into SUCCEEDED alone)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from billing.payments.metrics import PaymentMetrics
from invoicing.engine.model import InvoiceStatus
from invoicing.engine.payments import (
    AttemptStatus,
    Charge,
    ChargeRequest,
    PaymentAttempt,
    PaymentEvent,
    ProviderCharge,
    ProviderName,
    RefundRequest,
)
from invoicing.ports import PaymentLedger, PaymentProvider, ProviderUnavailable
from rating.errors import InvalidValue, UnknownReference

log = logging.getLogger("billing.payments")


class ProviderNotConfigured(InvalidValue):
    """A method of a provider this process has no adapter (or no secret) for."""


class PaymentService:
    """Charges and refunds on the ledger's payments through the configured providers."""

    def __init__(
        self,
        payments: PaymentLedger,
        providers: Mapping[ProviderName, PaymentProvider],
        now: Callable[[], datetime],
        metrics: PaymentMetrics | None = None,
    ) -> None:
        self.payments = payments
        self.providers = providers
        self.now = now
        self.metrics = metrics or PaymentMetrics()

    def charge(self, tenant_id: str, invoice_id: int, method_id: str | None, request_key: str | None) -> PaymentAttempt:
        """Charge the invoice (its subscription's default method when ``method_id`` is None); a
        retried request or an attempt in flight is answered as it stands, a PENDING one resent."""
        charge = self.payments.begin_attempt(tenant_id, invoice_id, method_id, request_key, self.now())
        if charge.attempt.status is not AttemptStatus.PENDING:
            return charge.attempt
        return self.send(charge)

    def send(self, charge: Charge) -> PaymentAttempt:
        """Steps 2 and 3 of a charge (see the module's docstring)."""
        attempt, method = charge.attempt, charge.method
        provider = self.providers.get(method.provider)
        if provider is None:
            answer = ProviderCharge("", AttemptStatus.FAILED, f"provider {method.provider} is not configured here")
        else:
            request = ChargeRequest(
                attempt.idempotency_key,
                attempt.amount,
                method.token,
                charge.invoice.subscription_id,
                attempt.invoice_number,
                f"Invoice {attempt.invoice_number}",
            )
            try:
                answer = provider.charge(request)
            except ProviderUnavailable as error:
                self.metrics.attempts.labels(provider=str(method.provider), status="UNAVAILABLE").inc()
                log.warning(
                    "attempt %s of %s: %s (retried with the same key)",
                    attempt.attempt_number,
                    attempt.invoice_number,
                    error,
                )
                return attempt
        self.metrics.attempts.labels(provider=str(method.provider), status=str(answer.status)).inc()
        if answer.status is AttemptStatus.FAILED:
            self.metrics.failures.labels(provider=str(method.provider), reason=_reason(answer.failure_reason)).inc()
        return self.payments.record_charge(attempt.id, answer, self.now())

    def refund(self, tenant_id: str, invoice_id: int, reason: str) -> PaymentAttempt:
        """Refund a PAID invoice's successful charge through its provider; on the provider's
        REFUNDED the invoice becomes REFUNDED with a REFUND credit note, in one transaction."""
        invoice = self.payments.invoice(tenant_id, invoice_id)
        if invoice is None:
            raise UnknownReference("invoice_id", f"no invoice {invoice_id}")
        if invoice.status is not InvoiceStatus.PAID:
            raise InvalidValue("invoice_id", f"invoice {invoice.invoice_number} is {invoice.status}, not PAID")
        paid = [a for a in self.payments.attempts(tenant_id, invoice_id) if a.status is AttemptStatus.SUCCEEDED]
        if len(paid) != 1 or paid[0].provider_reference is None:
            raise InvalidValue("invoice_id", f"invoice {invoice.invoice_number} has no single charge to refund")
        attempt = paid[0]
        assert attempt.provider_reference is not None
        if invoice.amount_refunded is not None and invoice.amount_refunded.amount > 0:
            # REFUND credit notes returned part of it already (money sent back outside the provider):
            # refunding the whole charge again would return that part twice
            raise InvalidValue(
                "invoice_id",
                f"invoice {invoice.invoice_number} has {invoice.amount_refunded.amount} refunded by credit notes; "
                "refund the rest with a REFUND credit note",
            )
        method = next(m for m in self.payments.methods(tenant_id, None) if m.id == attempt.payment_method_id)
        provider = self.providers.get(method.provider)
        if provider is None:
            raise ProviderNotConfigured("provider", f"{method.provider} is not configured here")
        answer = provider.refund(
            RefundRequest(f"{attempt.idempotency_key}:refund", attempt.provider_reference, attempt.amount, reason)
        )
        if answer.status is not AttemptStatus.REFUNDED:
            raise InvalidValue("refund", f"{method.provider} answered {answer.status}: {answer.failure_reason or ''}")
        return self.payments.mark_refunded(attempt.id, reason or "refund", self.now())


def _reason(reason: str | None) -> str:
    """A bounded label value: the provider's code, not its free text."""
    text = (reason or "unknown").split(":")[0].strip().replace(" ", "_")
    return text[:40] if text.replace("_", "").isalnum() else "other"


@dataclass
class PaymentSettlementService:
    """The PaymentSettlement port: verified provider events applied once (the webhook endpoint
    calls this)."""

    payments: PaymentLedger
    now: Callable[[], datetime]

    def settle(self, event: PaymentEvent) -> bool:
        return self.payments.settle(event, self.now())


@dataclass
class PassReport:
    """What one pass of the payment worker did."""

    overdue: list[str] = field(default_factory=list)
    resumed: list[PaymentAttempt] = field(default_factory=list)
    charged: list[PaymentAttempt] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)


class PaymentWorker:
    """``billing worker --role payments``: each pass, on the clock it is given, (1) marks invoices
    past due OVERDUE, (2) resends PENDING attempts with their own key, (3) charges finalized
    invoices of subscriptions with a default method and retries failed charges when the tenant's
    schedule says, (4) cancels PAST_DUE subscriptions the tenant's policy cancels.

    Without a provider (``service.providers`` empty) it only keeps the books, (1) and (4): invoices
    paid outside the engine still fall OVERDUE, and nothing is charged or retried, since every
    attempt would fail on our configuration and use up the customer's retries."""

    def __init__(self, service: PaymentService) -> None:
        self.service = service
        self.payments = service.payments

    def run_once(self) -> PassReport:
        now = self.service.now()
        report = PassReport()
        report.overdue = self.payments.mark_overdue(now)
        if self.service.providers:
            self._charge(now, report)
        report.canceled = self.payments.cancel_lapsed(now)
        metrics = self.service.metrics
        counts = self.payments.overdue_counts()
        metrics.overdue.clear()  # a tenant with nothing overdue any more is not left at its old count
        for tenant, count in counts.items():
            metrics.overdue.labels(tenant=tenant).set(count)
        metrics.last_pass.set(now.timestamp())
        return report

    def _charge(self, now: datetime, report: PassReport) -> None:
        """Steps (2) and (3)."""
        for attempt_id in self.payments.stuck_attempts():
            report.resumed.append(self.service.send(self.payments.charge_of(attempt_id)))
        for tenant, invoice_id in self.payments.due_charges(now):
            try:
                report.charged.append(self.service.charge(tenant, invoice_id, None, None))
            except InvalidValue as error:  # paid or voided meanwhile, the method removed
                log.info("invoice %s not charged: %s", invoice_id, error)
