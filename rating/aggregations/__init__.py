"""Aggregations: how a window's distinct events fold into one quantity. One file per aggregation."""

from collections.abc import Callable
from decimal import Decimal

from rating.aggregations import count, latest, max, sum, time_weighted_sum, unique_count
from rating.aggregations.window import EMPTY, Point, WindowTotals, merge, merge_all, totals_of
from rating.catalog import Aggregation

QUANTITY: dict[Aggregation, Callable[[WindowTotals, int], Decimal]] = {
    Aggregation.SUM: sum.quantity,
    Aggregation.COUNT: count.quantity,
    Aggregation.MAX: max.quantity,
    Aggregation.LATEST: latest.quantity,
    Aggregation.UNIQUE_COUNT: unique_count.quantity,
    Aggregation.TIME_WEIGHTED_SUM: time_weighted_sum.quantity,
}


def quantity(aggregation: Aggregation, totals: WindowTotals, end_ms: int) -> Decimal:
    """The quantity of an interval ending at ``end_ms`` whose distinct events have ``totals``."""
    return QUANTITY[aggregation](totals, end_ms)


__all__ = ["EMPTY", "Point", "WindowTotals", "merge", "merge_all", "quantity", "totals_of"]
