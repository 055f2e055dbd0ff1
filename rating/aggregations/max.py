"""MAX: the largest value; 0 when the interval has no event."""

from decimal import Decimal

from rating.aggregations.window import SummedTotals, WindowTotals


def quantity(totals: WindowTotals | SummedTotals, end_ms: int) -> Decimal:
    return totals.maximum if totals.maximum is not None else Decimal(0)
