"""Charges: the RECURRING line and one USAGE line per metered meter, from a RatingResult."""

from __future__ import annotations

from decimal import Decimal

from invoicing.engine.model import InvoiceLineItem, LineType
from invoicing.engine.proration import prorated_base
from rating.catalog import Plan
from rating.numbers import format_decimal
from rating.rate import RatingResult


def recurring_line(plan: Plan, result: RatingResult) -> InvoiceLineItem:
    """The plan's base price for the period, prorated when the period was cut short."""
    amount = prorated_base(plan.base_price, plan.currency_code, result.proration)
    metadata = {"plan_code": plan.code, "plan_version": str(plan.version)}
    description = f"{plan.name or plan.code} base fee"
    if result.proration != 1:
        metadata["proration"] = f"{result.proration.numerator}/{result.proration.denominator}"
        description += f" (prorated {format_decimal(result.proration)})"
    return InvoiceLineItem(LineType.RECURRING, description, amount, Decimal(1), plan.base_price, None, metadata)


def usage_lines(result: RatingResult) -> list[InvoiceLineItem]:
    """One USAGE line per rated meter, with the exact breakdown in its metadata."""
    return [
        InvoiceLineItem(
            LineType.USAGE,
            f"Usage: {item.metric_code}",
            item.amount,
            item.quantity,
            item.unit_price,
            item.metric_code,
            item.metadata(),
        )
        for item in result.items
    ]
