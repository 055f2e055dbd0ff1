"""COUNT: the number of distinct events."""

from decimal import Decimal

from rating.aggregations.window import WindowTotals


def quantity(totals: WindowTotals, end_ms: int) -> Decimal:
    return Decimal(totals.event_count)
