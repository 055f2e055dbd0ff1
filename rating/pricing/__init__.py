"""Pricing models: one small function per model, one file each."""

from collections.abc import Callable
from fractions import Fraction

from rating.catalog import PlanMeter, PricingModel, TierMode
from rating.pricing import graduated, package, per_unit, volume
from rating.pricing.charge import NO_CHARGE, TierCharge, UsageCharge


def price(meter: PlanMeter, billable: Fraction) -> UsageCharge:
    """Exact charge for ``billable`` units under the meter's pricing model."""
    model: Callable[[PlanMeter, Fraction], UsageCharge]
    if meter.pricing_model is PricingModel.FLAT:
        return NO_CHARGE
    if meter.pricing_model is PricingModel.PER_UNIT:
        model = per_unit.price
    elif meter.pricing_model is PricingModel.PACKAGE:
        model = package.price
    elif meter.tier_mode is TierMode.VOLUME:
        model = volume.price
    else:
        model = graduated.price
    return model(meter, billable)


__all__ = ["NO_CHARGE", "TierCharge", "UsageCharge", "price"]
