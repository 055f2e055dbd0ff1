"""UNIQUE_COUNT: exact number of distinct values of the metric's metadata field."""

from decimal import Decimal

from rating.aggregations.window import WindowTotals


def quantity(totals: WindowTotals, end_ms: int) -> Decimal:
    return Decimal(len(totals.uniques))
