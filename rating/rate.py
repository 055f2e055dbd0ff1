"""Rating: a period's usage quantities and a plan snapshot into a RatingResult (usage → charges)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from rating.catalog import Plan, PlanMeter
from rating.money import Money, to_minor
from rating.numbers import format_decimal
from rating.periods import Period
from rating.pricing import TierCharge, price


@dataclass(frozen=True, slots=True)
class RatingResultItem:
    """The charge for one meter: ``amount`` is rounded once, half-up; the rest is the exact why."""

    metric_code: str
    quantity: Decimal
    amount: Money
    included_units: Fraction
    billable_units: Fraction
    unbilled_units: Fraction
    unit_price: Decimal | None
    tiers: tuple[TierCharge, ...] = ()

    @property
    def currency_code(self) -> str:
        return self.amount.currency

    def metadata(self) -> dict[str, str]:
        """The exact breakdown, as strings, for invoice lines and the wire."""
        data = {
            "included_units": format_decimal(self.included_units),
            "billable_units": format_decimal(self.billable_units),
            "unbilled_units": format_decimal(self.unbilled_units),
        }
        for tier in self.tiers:
            prefix = f"tier_{tier.tier + 1}"
            data[f"{prefix}_units"] = format_decimal(tier.units)
            data[f"{prefix}_unit_price"] = format_decimal(tier.unit_price)
            data[f"{prefix}_flat_fee"] = format_decimal(tier.flat_fee)
            data[f"{prefix}_amount"] = format_decimal(tier.amount)
        return data


@dataclass(frozen=True, slots=True)
class RatingResult:
    """All usage charges of one subscription for one period, priced by one plan snapshot."""

    subscription_id: str
    plan_code: str
    plan_version: int
    period: Period
    proration: Fraction
    items: tuple[RatingResultItem, ...]
    rated_at: datetime

    def item(self, metric_code: str) -> RatingResultItem | None:
        return next((i for i in self.items if i.metric_code == metric_code), None)


def rate_meter(
    meter: PlanMeter,
    quantity: Decimal,
    currency: str,
    *,
    proration: Fraction = Fraction(1),
    allow_overage: bool = True,
) -> RatingResultItem:
    """Price one meter's quantity: included units (prorated, not rounded) are free, then the model."""
    included = Fraction(meter.included_units) * proration
    above = max(Fraction(0), Fraction(quantity) - included)
    billable, unbilled = (above, Fraction(0)) if allow_overage else (Fraction(0), above)
    charge = price(meter, billable)
    return RatingResultItem(
        metric_code=meter.metric_code,
        quantity=quantity,
        amount=Money(to_minor(charge.amount, currency), currency),
        included_units=included,
        billable_units=billable,
        unbilled_units=unbilled,
        unit_price=charge.unit_price,
        tiers=charge.tiers,
    )


def rate_period(
    subscription_id: str,
    plan: Plan,
    period: Period,
    usage: Mapping[str, Decimal],
    *,
    rated_at: datetime,
    proration: Fraction = Fraction(1),
    allow_overage: bool = True,
) -> RatingResult:
    """Rate every metered meter of ``plan`` on the period's quantities (absent metrics count as 0)."""
    items = tuple(
        rate_meter(
            meter,
            usage.get(meter.metric_code, Decimal(0)),
            plan.currency_code,
            proration=proration,
            allow_overage=allow_overage,
        )
        for meter in plan.meters
        if meter.is_metered
    )
    return RatingResult(subscription_id, plan.code, plan.version, period, proration, items, rated_at)
