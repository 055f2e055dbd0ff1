"""Ports of invoicing: the ledger (one transaction per finalization) and the usage it rates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from invoicing.engine.credit import CreditNote
from invoicing.engine.model import Invoice, InvoiceStatus
from invoicing.engine.payments import (
    Charge,
    ChargeRequest,
    PayableInvoice,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethod,
    ProviderCharge,
    ProviderName,
    ProviderRefund,
    RefundRequest,
)
from invoicing.engine.printable import TenantProfile
from invoicing.engine.subscriptions import Lifecycle, Subscription, SubscriptionStatus, status_at
from invoicing.engine.terms import BillingTerms
from rating.catalog import Aggregation, Plan
from rating.money import Money
from rating.periods import BillingInterval


@dataclass(frozen=True, slots=True)
class BilledUsage:
    """What a finalized period billed for one meter; late usage is billed against it."""

    subscription_id: str
    period_start: datetime
    period_end: datetime
    metric_code: str
    quantity: Decimal
    amount: Money
    plan_code: str
    plan_version: int
    share: Fraction
    allow_overage: bool


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """An event committed in the same transaction as the change it announces."""

    topic: str
    key: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A subscription as the catalog holds it: the engine's value, the plan version it is on (and
    that version's billing interval), its status, and a revision that grows with every change."""

    subscription: Subscription
    plan_version: int
    billing_interval: BillingInterval
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    """As written with the revision; :meth:`status_at` is the status on a clock."""
    revision: int = 1
    lifecycle: Lifecycle = field(default_factory=Lifecycle)

    @property
    def id(self) -> str:
        return self.subscription.id

    @property
    def stops_billing(self) -> bool:
        """Written CANCELED or TRIAL_EXPIRED: the calendar ends its billing where it applies it."""
        return self.status in (SubscriptionStatus.CANCELED, SubscriptionStatus.TRIAL_EXPIRED)

    def status_at(self, now: datetime) -> SubscriptionStatus:
        """The status at ``now`` (design section 6). A scheduled cancel or trial-cutting plan
        change has its instant after ``now``, so the status before it follows by itself."""
        return status_at(self.status, self.subscription, self.lifecycle, now)

    def plan_at(self, now: datetime) -> tuple[str, int]:
        """The plan code and version in force at ``now``: the previous ones before a scheduled
        plan change takes effect."""
        life = self.lifecycle
        if life.pending(now) and life.previous_plan_code is not None and life.previous_plan_version is not None:
            return life.previous_plan_code, life.previous_plan_version
        return self.subscription.plan_code, self.plan_version


@dataclass(frozen=True, slots=True)
class SubscriptionRevision:
    """One revision of a subscription as the ledger's history keeps it, and when it was saved (on
    the saver's clock; the ledger's own when the saver gave none)."""

    record: SubscriptionRecord
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class TermsRecord:
    """A tenant's terms as the catalog holds them, and a revision that grows with every change."""

    terms: BillingTerms
    revision: int = 1

    @property
    def tenant_id(self) -> str:
        return self.terms.tenant_id


@dataclass(frozen=True, slots=True)
class UsageRequest:
    subscription_id: str
    metric_code: str
    aggregation: Aggregation
    start: datetime
    end: datetime


class UsageReader(Protocol):
    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        """The exact aggregated quantity of each request's ``[start, end)``."""
        ...


class InvoiceSession(Protocol):
    """Invoices and their gapless numbers: what a finalization reads and writes of them."""

    def find_invoice(self, subscription_id: str, period_start: datetime) -> Invoice | None: ...
    def next_invoice_sequence(self, tenant_id: str) -> int:
        """The next number of the tenant's gapless sequence, taken inside this transaction."""
        ...

    def add_invoice(self, invoice: Invoice) -> None: ...
    def list_invoices(self, tenant_id: str, subscription_id: str | None = None) -> list[Invoice]: ...
    def discounted_invoice_count(self, subscription_id: str) -> int: ...


class CreditSession(Protocol):
    """A subscription's credit: notes add to its balance, finalizations spend from it."""

    def credit_balance(self, subscription_id: str, currency: str) -> Money: ...
    def add_credit_note(self, tenant_id: str, note: CreditNote) -> None: ...
    def use_credit(self, subscription_id: str, amount: Money, invoice_number: str) -> None: ...


class BilledUsageSession(Protocol):
    """What finalized periods billed, kept so late usage is billed against it."""

    def billed_usage(self, subscription_id: str) -> list[BilledUsage]: ...
    def record_billed_usage(self, usage: BilledUsage) -> None:
        """Insert or replace the row of (subscription, period start, metric)."""
        ...


class CatalogSession(Protocol):
    """Plans, tenants' terms and subscriptions: what is billed, and how."""

    def save_plan(self, tenant_id: str, plan: Plan) -> None: ...
    def save_plan_version(self, tenant_id: str, plan: Plan) -> tuple[int, bool]:
        """Save ``plan`` as its code's next version, or find the newest unchanged (False)
        (``plan_version_for``); the version. Concurrent writers of one tenant's plans take turns,
        so two never claim the same version nor overwrite each other's."""
        ...

    def keep_plan(self, tenant_id: str, plan: Plan) -> None:
        """Store ``plan`` at its version unless that version is stored already (a rated snapshot
        the ledger did not have): never replaces another writer's snapshot of the version."""
        ...

    def get_plan(self, tenant_id: str, code: str, version: int | None = None) -> Plan | None: ...
    def save_terms(self, terms: BillingTerms) -> TermsRecord:
        """Create or change the tenant's terms and announce them on ``catalog.terms`` in this
        transaction; saving what is stored already changes and announces nothing."""
        ...

    def get_terms(self, tenant_id: str) -> TermsRecord | None: ...
    def save_subscription(
        self,
        subscription: Subscription,
        plan_version: int | None = None,
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
        lifecycle: Lifecycle | None = None,
        recorded_at: datetime | None = None,
    ) -> SubscriptionRecord:
        """Create or change a subscription on a saved plan version (the newest when None), append
        the new revision to its history (saved at ``recorded_at``: the caller's clock) and
        announce it on ``catalog.subscriptions``; saving what is stored already changes and
        announces nothing. Without ``lifecycle``, the revision takes effect when read
        (``lifecycle_of``)."""
        ...

    def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None: ...
    def subscription_revisions(self, subscription_id: str) -> list[SubscriptionRevision]:
        """Every revision of the subscription, oldest first (none for an unknown id)."""
        ...


class OutboxSession(Protocol):
    """Events committed with the change they announce (a relay publishes them after commit)."""

    def add_outbox(self, message: OutboxMessage) -> None: ...


class LedgerSession(InvoiceSession, CreditSession, BilledUsageSession, CatalogSession, OutboxSession, Protocol):
    """One transaction: everything done through it commits together or not at all."""


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """A plan version as the API shows it: when it was saved, and whether it is its code's newest."""

    tenant_id: str
    plan: Plan
    created_at: datetime
    is_newest: bool


@dataclass(frozen=True, slots=True)
class StoredInvoice:
    """An invoice and the ledger's id of it (what ``GetInvoice`` takes), with what its credit notes
    took off it (ADJUSTMENT notes off ``amount_due``, REFUND notes returned of ``amount_paid``, in
    minor units of its currency), when a payment left nothing due on it, and when it is due (its
    issue plus the tenant's payment net days; None for a draft)."""

    id: int
    invoice: Invoice
    amount_credited: int = 0
    amount_refunded: int = 0
    paid_at: datetime | None = None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredCreditNote:
    """A credit note as the API shows it: its id, its tenant (stored with it) and the id of the
    invoice it names, if any."""

    id: int
    tenant_id: str
    note: CreditNote
    invoice_id: int | None = None
    idempotency_key: str | None = None


class ApiLedger(Protocol):
    """What the served API reads, each read scoped to one tenant (pages are keyset pages that start
    strictly after ``after``, the sort key of the previous page's last row), and its plan writes."""

    def subscription_session(self, subscription_id: str) -> AbstractContextManager[LedgerSession]:
        """A ledger transaction holding the subscription's lock: the API's changes of one
        subscription (create, cancel, plan change) read, decide and save in turn."""
        ...

    def create_plan(self, tenant_id: str, plan: Plan) -> tuple[StoredPlan, bool]:
        """Save ``plan`` as the next version of its code, or find it unchanged (False)."""
        ...

    def plan(self, tenant_id: str, code: str, version: int | None = None) -> StoredPlan | None:
        """A version of a plan code (the newest when None)."""
        ...

    def plans(self, tenant_id: str, newest_only: bool, after: tuple[str, int] | None, limit: int) -> list[StoredPlan]:
        """Plan versions by (code, version)."""
        ...

    def subscriptions(
        self,
        tenant_id: str,
        status: SubscriptionStatus | None,
        plan_code: str | None,
        after: str | None,
        limit: int,
        now: datetime,
    ) -> list[SubscriptionRecord]:
        """Subscriptions by id; ``status`` and ``plan_code`` as they are at ``now``
        (``SubscriptionRecord.status_at``, ``plan_at``)."""
        ...

    def add_credit_note(
        self, tenant_id: str, note: CreditNote, idempotency_key: str | None
    ) -> tuple[StoredCreditNote, bool]:
        """Add the tenant's note, or find the subscription's note of that key (False, nothing added)."""
        ...

    def credit_invoice(
        self, tenant_id: str, invoice_id: int, note: CreditNote, idempotency_key: str | None
    ) -> tuple[StoredCreditNote, bool] | None:
        """Add an ADJUSTMENT or REFUND note against the tenant's invoice and move the invoice by it
        (``invoicing.engine.credit.credit_invoice``) in one transaction, or find the subscription's
        note of that key (False); None when the tenant has no such invoice."""
        ...

    def credit_notes(
        self, tenant_id: str, subscription_id: str | None, invoice_number: str | None, after: int | None, limit: int
    ) -> list[StoredCreditNote]:
        """Credit notes of the tenant's subscriptions, by id."""
        ...

    def last_invoice_sequence(self, tenant_id: str) -> int:
        """The last number the tenant's gapless sequence gave an invoice (0 before the first)."""
        ...

    def invoice(self, tenant_id: str, invoice_id: int) -> StoredInvoice | None: ...
    def invoices(
        self,
        tenant_id: str,
        subscription_id: str | None,
        status: InvoiceStatus | None,
        after: int | None,
        limit: int,
    ) -> list[StoredInvoice]:
        """Invoices by id (the order they were stored)."""
        ...


class InvoiceDocuments(Protocol):
    """What an invoice's PDF reads: the invoice, its subscription (the customer) and the seller
    (the tenant's profile, which is also written here)."""

    def invoice(self, tenant_id: str, invoice_id: int) -> StoredInvoice | None: ...
    def numbered(self, invoice_number: str, tenant_id: str | None) -> list[StoredInvoice]:
        """The invoices of that number: the tenant's one, or each tenant's when None."""
        ...

    def subscription(self, tenant_id: str, subscription_id: str) -> SubscriptionRecord | None: ...
    def profile(self, tenant_id: str) -> TenantProfile | None: ...
    def save_profile(self, profile: TenantProfile) -> None:
        """Create or replace the tenant's profile."""
        ...


class Ledger(Protocol):
    def session(self) -> AbstractContextManager[LedgerSession]:
        """A transaction: commits when the block ends normally, rolls back when it raises."""
        ...

    def batch(self, periods: Sequence[tuple[str, datetime]] = ()) -> AbstractContextManager[None]:
        """One transaction for every session this thread opens inside the block, committed once at
        its end (or not at all when it raises); batches do not nest. ``periods`` (subscription,
        period start) are those about to be finalized, which the ledger may read ahead."""
        ...

    def check_reachable(self) -> None:
        """One round trip to the store, changing nothing: raises what an unreachable one raises
        (a worker's health metric between its transactions)."""
        ...


class ProviderUnavailable(Exception):
    """The provider did not answer (timeout, 5xx, network): the outcome is unknown, and the call is
    retried with the same idempotency key."""


class WebhookRejected(Exception):
    """A webhook that is unsigned, badly signed, stale or unreadable; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookMalformed(WebhookRejected):
    """A webhook whose body cannot be read (not JSON, a field missing): a bad request rather than a
    bad signature, answered 400 where a signature failure is answered 401."""


class WebhookIgnored(Exception):
    """A genuine notification that carries no outcome to settle (Midtrans ``pending``, a refund that
    failed): acknowledged, so the provider stops resending it, and not settled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentProvider(Protocol):
    """One payment provider (DUMMY, Stripe, Xendit, Midtrans) behind a thin adapter."""

    name: ProviderName

    def charge(self, request: ChargeRequest) -> ProviderCharge:
        """Charge once per idempotency key; raises ProviderUnavailable when the outcome is unknown."""
        ...

    def refund(self, request: RefundRequest) -> ProviderRefund: ...


class WebhookVerifier(Protocol):
    """Checks one provider's webhook signature and reads the event it carries."""

    provider: ProviderName

    def verify(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        """The verified event; raises WebhookRejected otherwise (WebhookMalformed for an unreadable
        body), or WebhookIgnored for a genuine notification without an outcome. Header names are
        lower case."""
        ...


class PaymentSettlement(Protocol):
    """Applies verified provider events to attempts and invoices."""

    def settle(self, event: PaymentEvent) -> bool:
        """Apply ``event`` once; False when its (provider, event id) was settled before."""
        ...


class PaymentLedger(Protocol):
    """Payment methods, attempts and settlement in the ledger (invoicing/ledger/postgres_payments.py):
    each change one transaction with the invoice it touches and its outbox row."""

    def attach_method(self, method: PaymentMethod, now: datetime) -> PaymentMethod:
        """Store the method (a new id when it has none); the default when asked or the first."""
        ...

    def methods(self, tenant_id: str, subscription_id: str | None) -> list[PaymentMethod]: ...
    def invoice(self, tenant_id: str, invoice_id: int) -> PayableInvoice | None: ...
    def attempts(self, tenant_id: str, invoice_id: int) -> list[PaymentAttempt]: ...
    def begin_attempt(
        self, tenant_id: str, invoice_id: int, method_id: str | None, request_key: str | None, now: datetime
    ) -> Charge:
        """A new attempt recorded PENDING and committed, or the one a retried request (or one in
        flight) already has."""
        ...

    def charge_of(self, attempt_id: int) -> Charge: ...
    def record_charge(self, attempt_id: int, answer: ProviderCharge, now: datetime) -> PaymentAttempt:
        """The provider's answer applied: the attempt moves forward only; a success pays the invoice."""
        ...

    def settle(self, event: PaymentEvent, now: datetime) -> bool:
        """Apply a verified provider event once per (provider, event id)."""
        ...

    def mark_refunded(self, attempt_id: int, reason: str, now: datetime) -> PaymentAttempt: ...
    def void_invoice(self, tenant_id: str, invoice_id: int, reason: str, now: datetime) -> tuple[PayableInvoice, Money]:
        """The tenant's unpaid invoice VOID, and the prepaid credit it had used, given back."""
        ...

    def stuck_attempts(self) -> list[int]:
        """Attempts still PENDING (their provider's answer never committed)."""
        ...

    def due_charges(self, now: datetime) -> list[tuple[str, int]]:
        """(tenant, invoice id) to charge now: never charged, or a failed charge's retry due."""
        ...

    def mark_overdue(self, now: datetime) -> list[str]: ...
    def cancel_lapsed(self, now: datetime) -> list[str]: ...
    def overdue_counts(self) -> dict[str, int]: ...
