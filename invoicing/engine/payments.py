"""Payments' pure vocabulary: the providers, the attempt statuses and the transitions between them,
the provider-side values a charge and a refund produce, and the idempotency key every provider call
carries (derived from the attempt, so a retry or a crash between the provider's answer and our
commit reaches the provider with the same key and never charges twice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from invoicing.engine.model import InvoiceStatus
from rating.errors import InvalidValue
from rating.money import Money


class ProviderName(StrEnum):
    DUMMY = "DUMMY"
    STRIPE = "STRIPE"
    XENDIT = "XENDIT"
    MIDTRANS = "MIDTRANS"


class AttemptStatus(StrEnum):
    PENDING = "PENDING"  # recorded, the provider not called yet
    PROCESSING = "PROCESSING"  # the provider accepted it; its outcome comes later (webhook)
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


# An attempt moves only forward; a provider's late or repeated word cannot move it back.
ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.PENDING: frozenset({AttemptStatus.PROCESSING, AttemptStatus.SUCCEEDED, AttemptStatus.FAILED}),
    AttemptStatus.PROCESSING: frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.FAILED}),
    AttemptStatus.SUCCEEDED: frozenset({AttemptStatus.REFUNDED}),
    AttemptStatus.FAILED: frozenset(),
    AttemptStatus.REFUNDED: frozenset(),
}


def attempt_idempotency_key(tenant_id: str, invoice_number: str, attempt_number: int) -> str:
    """The key every provider call of one attempt carries: the same attempt always sends the same
    key, and a new attempt (a dunning retry) a new one."""
    return f"{tenant_id}:{invoice_number}:attempt-{attempt_number}"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One charge as a provider receives it."""

    idempotency_key: str
    amount: Money
    method_token: str  # the provider's handle of the payment method (Stripe pm_…, a DUMMY token, a bank code…)
    customer_reference: str  # the tenant's customer (subscription) the charge is for
    invoice_number: str
    description: str


@dataclass(frozen=True, slots=True)
class ProviderCharge:
    """A provider's answer to a charge. PROCESSING means the outcome arrives later by webhook."""

    reference: str  # the provider's id (PaymentIntent, Xendit invoice, Midtrans order)
    status: AttemptStatus
    failure_reason: str | None = None
    action_url: str | None = None  # where the customer completes the payment, when the provider has one


@dataclass(frozen=True, slots=True)
class RefundRequest:
    idempotency_key: str
    charge_reference: str
    amount: Money
    reason: str


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    reference: str
    status: AttemptStatus  # REFUNDED, PROCESSING or FAILED
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A provider's word about a charge or refund, from a webhook whose signature was verified."""

    provider: ProviderName
    event_id: str  # the provider's id of this notification: settlement is idempotent on it
    status: AttemptStatus  # SUCCEEDED, FAILED or REFUNDED
    charge_reference: str | None = None
    idempotency_key: str | None = None
    amount: Money | None = None
    failure_reason: str | None = None


class PaymentMethodType(StrEnum):
    CARD = "CARD"
    VA = "VA"  # virtual account
    EWALLET = "EWALLET"


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    """A subscription's way to pay at one provider; ``token`` is the provider's handle of it (never
    a card number)."""

    id: str
    tenant_id: str
    subscription_id: str
    provider: ProviderName
    type: PaymentMethodType
    token: str
    display_name: str = ""
    last4: str = ""
    exp_month: int = 0
    exp_year: int = 0
    is_default: bool = False
    provider_data: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class PaymentAttempt:
    """One charge of one invoice through one method (``attempt_number`` 1 for the first)."""

    id: int
    tenant_id: str
    invoice_id: int
    invoice_number: str
    payment_method_id: str
    attempt_number: int
    status: AttemptStatus
    amount: Money
    idempotency_key: str
    attempted_at: datetime
    provider_reference: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    next_retry_at: datetime | None = None


def attempt_transition(current: AttemptStatus, target: AttemptStatus) -> bool:
    """Whether ``current`` → ``target`` is a move forward; the same status again is no move
    (a repeated word), and a move backwards is refused by the caller ignoring it."""
    return target in ATTEMPT_TRANSITIONS[current]


class NoPaymentMethod(InvalidValue):
    """A charge without a method named and none set as the subscription's default."""


@dataclass(frozen=True, slots=True)
class PayableInvoice:
    """What a charge needs of an invoice (the ledger's id, its number and its amounts)."""

    id: int
    tenant_id: str
    subscription_id: str
    invoice_number: str
    status: InvoiceStatus
    amount_paid: Money
    amount_due: Money
    issued_at: datetime | None
    paid_at: datetime | None
    amount_refunded: Money | None = None
    """Money already returned of ``amount_paid`` (REFUND credit notes and provider refunds)."""


@dataclass(frozen=True, slots=True)
class Charge:
    """An attempt to send to its provider: the attempt, its invoice and its method."""

    attempt: PaymentAttempt
    invoice: PayableInvoice
    method: PaymentMethod
