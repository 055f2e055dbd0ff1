"""PER_UNIT (METERED): billable units × unit price; ``overage_unit_price`` prices them when set."""

from fractions import Fraction

from rating.catalog import PlanMeter
from rating.pricing.charge import UsageCharge


def price(meter: PlanMeter, billable: Fraction) -> UsageCharge:
    unit_price = meter.overage_unit_price if meter.overage_unit_price is not None else meter.unit_price
    return UsageCharge(billable * Fraction(unit_price), unit_price)
