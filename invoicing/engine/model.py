"""Invoice values named as in the seed's invoice.proto."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from rating.money import Money
from rating.periods import Period


class LineType(StrEnum):
    RECURRING = "RECURRING"
    USAGE = "USAGE"
    OVERAGE = "OVERAGE"
    DISCOUNT = "DISCOUNT"
    TAX = "TAX"
    ADJUSTMENT = "ADJUSTMENT"


SUBTOTAL_TYPES = frozenset({LineType.RECURRING, LineType.USAGE, LineType.OVERAGE, LineType.ADJUSTMENT})


class InvoiceStatus(StrEnum):
    DRAFT = "DRAFT"
    PENDING = "PENDING"
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    VOID = "VOID"
    REFUNDED = "REFUNDED"


@dataclass(frozen=True, slots=True)
class InvoiceLineItem:
    """One rounded line; DISCOUNT lines are negative so that lines add up."""

    type: LineType
    description: str
    amount: Money
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    metric_code: str | None = None
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice for one subscription and one billing period. Finalized invoices never change."""

    tenant_id: str
    subscription_id: str
    period: Period
    currency_code: str
    line_items: tuple[InvoiceLineItem, ...]
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money
    credits_applied: Money
    amount_paid: Money
    amount_due: Money
    status: InvoiceStatus = InvoiceStatus.DRAFT
    invoice_number: str | None = None
    issued_at: datetime | None = None
    plan_code: str = ""
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, datetime]:
        """At most one invoice per (subscription, period start)."""
        return (self.subscription_id, self.period.start)
