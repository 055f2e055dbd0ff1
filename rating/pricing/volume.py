"""TIERED, VOLUME: every billable unit at the price of the tier the total reaches, plus that
tier's flat fee. No billable unit, no charge."""

from fractions import Fraction

from rating.catalog import PlanMeter
from rating.pricing.charge import NO_CHARGE, TierCharge, UsageCharge


def price(meter: PlanMeter, billable: Fraction) -> UsageCharge:
    if billable <= 0:
        return NO_CHARGE
    index, tier = next((i, t) for i, t in enumerate(meter.tiers) if t.up_to is None or billable <= Fraction(t.up_to))
    amount = billable * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
    return UsageCharge(amount, tier.unit_price, (TierCharge(index, billable, tier.unit_price, tier.flat_fee, amount),))
