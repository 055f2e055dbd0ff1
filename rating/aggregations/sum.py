"""SUM: the total of the values."""

from decimal import Decimal

from rating.aggregations.window import SummedTotals, WindowTotals


def quantity(totals: WindowTotals | SummedTotals, end_ms: int) -> Decimal:
    return totals.total
