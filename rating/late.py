"""Late usage: what a finalized period still owes (or is owed) once more usage arrived for it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rating.money import Money
from rating.periods import Period
from rating.rate import RatingResultItem


@dataclass(frozen=True, slots=True)
class LateUsageDelta:
    """The difference between re-rating a finalized period now and what its invoices billed."""

    metric_code: str
    billed_quantity: Decimal
    quantity: Decimal
    amount: Money


def late_usage_delta(billed: RatingResultItem, now: RatingResultItem) -> LateUsageDelta | None:
    """None when nothing changed; otherwise the rounded amount still due (rounded lines stay sums)."""
    if now.quantity == billed.quantity:
        return None
    return LateUsageDelta(now.metric_code, billed.quantity, now.quantity, now.amount - billed.amount)


@dataclass(frozen=True, slots=True)
class LateUsage:
    """The current quantity of one metric of a finalized period that received usage after it."""

    period: Period
    metric_code: str
    quantity: Decimal
