"""Window totals: everything any aggregation needs from a window's distinct events, mergeable in time order.

A window (a 15-minute bucket, an hour, a day, a month, or the edge of an arbitrary interval) is
summarised as ``WindowTotals``. Totals of adjacent windows merge into the totals of their union,
so any half-open interval is answered exactly from stored buckets plus the raw events at its edges.
All arithmetic runs in ``rating.numbers.WIDE`` (100 digits), never the thread's 28-digit context.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import NamedTuple

from rating.numbers import WIDE


class Point(NamedTuple):
    """One distinct usage event as aggregation sees it; ordered by (time, idempotency key).
    A NamedTuple rather than a dataclass: it is built once per event on the hot path."""

    at_ms: int
    key: str
    value: Decimal
    unique: str | None = None


class WindowTotals(NamedTuple):
    """Absolute totals of one window. ``tw_integral`` is Σ value × Δt in value-milliseconds from the
    first event to the last (the tail after the last event depends on where the interval ends);
    it is kept exact only where the window's points are (TIME_WEIGHTED_SUM metrics). A NamedTuple:
    one is built per changed window on every flush."""

    event_count: int = 0
    total: Decimal = Decimal(0)
    maximum: Decimal | None = None
    latest: Point | None = None
    first: Point | None = None
    last: Point | None = None
    tw_integral: Decimal = Decimal(0)
    uniques: frozenset[str] = frozenset()


EMPTY = WindowTotals()


@dataclass(frozen=True, slots=True)
class SummedTotals:
    """An interval's event count, total and maximum, and nothing else: all that SUM, COUNT and MAX
    need, and what a store can add up without handing over a window or an event
    (``UsageStore.summed``). The same three fields of the interval's ``WindowTotals``."""

    event_count: int = 0
    total: Decimal = Decimal(0)
    maximum: Decimal | None = None


def summed_of(totals: WindowTotals) -> SummedTotals:
    """The event count, total and maximum of ``totals``."""
    return SummedTotals(totals.event_count, totals.total, totals.maximum)


def totals_of(points: Iterable[Point]) -> WindowTotals:
    """Totals of a set of distinct events, in any order."""
    ordered = sorted(points)
    if not ordered:
        return EMPTY
    with localcontext(WIDE):
        integral = Decimal(0)
        for here, after in itertools.pairwise(ordered):
            integral += here.value * (after.at_ms - here.at_ms)
        total = sum((p.value for p in ordered), Decimal(0))
    return WindowTotals(
        event_count=len(ordered),
        total=total,
        maximum=max(p.value for p in ordered),
        latest=ordered[-1],
        first=ordered[0],
        last=ordered[-1],
        tw_integral=integral,
        uniques=frozenset(p.unique for p in ordered if p.unique is not None),
    )


def merge(earlier: WindowTotals, later: WindowTotals) -> WindowTotals:
    """Totals of two windows, ``earlier`` wholly before ``later`` in event time."""
    if earlier.last is None:
        return later
    if later.first is None:
        return earlier
    with localcontext(WIDE):
        bridge = earlier.last.value * (later.first.at_ms - earlier.last.at_ms)
        total = earlier.total + later.total
        integral = earlier.tw_integral + bridge + later.tw_integral
    maximum = max(v for v in (earlier.maximum, later.maximum) if v is not None)
    return WindowTotals(
        event_count=earlier.event_count + later.event_count,
        total=total,
        maximum=maximum,
        latest=later.latest,
        first=earlier.first,
        last=later.last,
        tw_integral=integral,
        uniques=earlier.uniques | later.uniques,
    )


def merge_all(windows: Iterable[WindowTotals]) -> WindowTotals:
    """Totals of consecutive windows given in time order."""
    result = EMPTY
    for window in windows:
        result = merge(result, window)
    return result
