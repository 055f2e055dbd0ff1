"""The payment worker's and ChargeInvoice's metrics (issue #15): attempts by provider and outcome,
failures by provider and reason, and the overdue invoices per tenant."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PaymentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.attempts = Counter(
            "billing_payment_attempts",
            "Provider answers to charge calls by provider and status (UNAVAILABLE: none, resent with the same key)",
            ["provider", "status"],
            registry=self.registry,
        )
        self.failures = Counter(
            "billing_payment_failures",
            "Charges the provider declined or failed, by provider and reason",
            ["provider", "reason"],
            registry=self.registry,
        )
        self.overdue = Gauge(
            "billing_invoices_overdue",
            "OVERDUE invoices per tenant, as the payment worker last counted them",
            ["tenant"],
            registry=self.registry,
        )
        self.last_pass = Gauge(
            "billing_payment_worker_last_pass_timestamp_seconds",
            "When the payment worker last completed a pass (Unix time of its clock)",
            registry=self.registry,
        )
