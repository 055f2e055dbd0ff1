"""Exact usage for any half-open interval ``[a, b)``: whole 15-minute buckets for the middle, raw
distinct events for the ragged edges, merged in time order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rating.aggregations import Point, WindowTotals, merge, merge_all, totals_of
from streams.operators.windows import BUCKET_MS


@dataclass(frozen=True, slots=True)
class UsageQuery:
    subscription_id: str
    metric_code: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Which parts of ``[start, end)`` come from raw events and which from buckets."""

    left: tuple[int, int]
    buckets: tuple[int, int]
    right: tuple[int, int]


def plan_read(start_ms: int, end_ms: int) -> ReadPlan:
    """Buckets ``[ceil(a), floor(b))`` when there is at least one whole one; raw events elsewhere."""
    first = -(-start_ms // BUCKET_MS) * BUCKET_MS
    last = end_ms - end_ms % BUCKET_MS
    if first >= last:
        return ReadPlan((start_ms, end_ms), (first, first), (end_ms, end_ms))
    return ReadPlan((start_ms, first), (first, last), (last, end_ms))


def assemble(left: Iterable[Point], buckets: Iterable[WindowTotals], right: Iterable[Point]) -> WindowTotals:
    """Totals of the interval from its edge events and its buckets (given in time order)."""
    return merge(merge(totals_of(left), merge_all(buckets)), totals_of(right))
