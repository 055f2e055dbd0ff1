"""Credits: a prepaid balance (BALANCE credit notes, trial balance) reduces what is due, never below zero."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rating.money import Money


class CreditType(StrEnum):
    ADJUSTMENT = "ADJUSTMENT"
    REFUND = "REFUND"
    BALANCE = "BALANCE"


@dataclass(frozen=True, slots=True)
class CreditNote:
    subscription_id: str
    type: CreditType
    amount: Money
    created_at: datetime
    reason: str = ""
    invoice_number: str | None = None


def apply_credit(balance: Money, due: Money) -> tuple[Money, Money]:
    """(applied, remaining balance): as much of the balance as the due amount takes."""
    applied = Money(max(0, min(balance.amount, due.amount)), due.currency)
    return applied, balance - applied
