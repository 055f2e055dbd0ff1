"""Aggregations: how a window's distinct events fold into one quantity. One file per aggregation."""

from collections.abc import Callable
from decimal import Decimal

from rating.aggregations import count, latest, max, sum, time_weighted_sum, unique_count
from rating.aggregations.window import EMPTY, Point, SummedTotals, WindowTotals, merge, merge_all, summed_of, totals_of
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


SUMMED: dict[Aggregation, Callable[[SummedTotals, int], Decimal]] = {
    Aggregation.SUM: sum.quantity,
    Aggregation.COUNT: count.quantity,
    Aggregation.MAX: max.quantity,
}
"""The aggregations whose quantity needs only an interval's ``SummedTotals``."""


def summed_quantity(aggregation: Aggregation, totals: SummedTotals, end_ms: int) -> Decimal:
    """Like :func:`quantity`, from the event count, total and maximum of an aggregation in ``SUMMED``."""
    return SUMMED[aggregation](totals, end_ms)


__all__ = [
    "EMPTY",
    "SUMMED",
    "Point",
    "SummedTotals",
    "WindowTotals",
    "merge",
    "merge_all",
    "quantity",
    "summed_of",
    "summed_quantity",
    "totals_of",
]
