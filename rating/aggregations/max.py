"""MAX: the largest value; 0 when the interval has no event."""

from decimal import Decimal

from rating.aggregations.window import WindowTotals


def quantity(totals: WindowTotals, end_ms: int) -> Decimal:
    return totals.maximum if totals.maximum is not None else Decimal(0)
