"""TIERED, GRADUATED: each billable unit is priced by the tier it falls in; ``up_to`` is an
inclusive upper bound; a tier's flat fee is charged once when any unit reaches it."""

from fractions import Fraction

from rating.catalog import PlanMeter
from rating.pricing.charge import TierCharge, UsageCharge


def price(meter: PlanMeter, billable: Fraction) -> UsageCharge:
    charges: list[TierCharge] = []
    lower = Fraction(0)
    for index, tier in enumerate(meter.tiers):
        upper = billable if tier.up_to is None else min(billable, Fraction(tier.up_to))
        units = upper - lower
        if units <= 0:
            break
        amount = units * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
        charges.append(TierCharge(index, units, tier.unit_price, tier.flat_fee, amount))
        if tier.up_to is None:
            break
        lower = Fraction(tier.up_to)
    return UsageCharge(sum((c.amount for c in charges), Fraction(0)), None, tuple(charges))
