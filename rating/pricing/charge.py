"""The priced result of one meter, before rounding: exact amount, applied unit price, tier breakdown."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class TierCharge:
    """Units that fell in one tier and what they cost (exact)."""

    tier: int
    units: Fraction
    unit_price: Decimal
    flat_fee: Decimal
    amount: Fraction


@dataclass(frozen=True, slots=True)
class UsageCharge:
    """Exact amount in major units for the billable units; ``unit_price`` is None when no single
    price applies to every unit (graduated tiers)."""

    amount: Fraction
    unit_price: Decimal | None
    tiers: tuple[TierCharge, ...] = ()


NO_CHARGE = UsageCharge(Fraction(0), None)
