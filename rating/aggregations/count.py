"""COUNT: the number of distinct events."""

from decimal import Decimal

from rating.aggregations.window import SummedTotals, WindowTotals


def quantity(totals: WindowTotals | SummedTotals, end_ms: int) -> Decimal:
    return Decimal(totals.event_count)
