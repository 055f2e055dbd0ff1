"""SUM: the total of the values."""

from decimal import Decimal

from rating.aggregations.window import WindowTotals


def quantity(totals: WindowTotals, end_ms: int) -> Decimal:
    return totals.total
