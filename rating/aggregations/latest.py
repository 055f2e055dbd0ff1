"""LATEST: the value of the event with the greatest recorded_at (ties: greatest idempotency key)."""

from decimal import Decimal

from rating.aggregations.window import WindowTotals


def quantity(totals: WindowTotals, end_ms: int) -> Decimal:
    return totals.latest.value if totals.latest is not None else Decimal(0)
