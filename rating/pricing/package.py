"""PACKAGE: ``ceil(billable / package_size)`` packages at the package price (``unit_price``)."""

import math
from fractions import Fraction

from rating.catalog import PlanMeter
from rating.pricing.charge import UsageCharge


def price(meter: PlanMeter, billable: Fraction) -> UsageCharge:
    assert meter.package_size is not None  # guaranteed by PlanMeter
    packages = math.ceil(billable / Fraction(meter.package_size)) if billable > 0 else 0
    return UsageCharge(packages * Fraction(meter.unit_price), meter.unit_price)
