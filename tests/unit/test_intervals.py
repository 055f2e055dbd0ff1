"""Exact usage of any [a, b): whole buckets in the middle, raw events at the edges."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.aggregations import Point, totals_of
from streams.operators.intervals import ReadPlan, assemble, plan_read
from streams.operators.windows import BUCKET_MS

pytestmark = pytest.mark.unit

Q = BUCKET_MS


@pytest.mark.parametrize(
    ("start", "end", "plan"),
    [
        (0, 4 * Q, ReadPlan((0, 0), (0, 4 * Q), (4 * Q, 4 * Q))),  # aligned: buckets only
        (1, 4 * Q, ReadPlan((1, Q), (Q, 4 * Q), (4 * Q, 4 * Q))),
        (0, 4 * Q - 1, ReadPlan((0, 0), (0, 3 * Q), (3 * Q, 4 * Q - 1))),
        (Q - 1, 2 * Q + 1, ReadPlan((Q - 1, Q), (Q, 2 * Q), (2 * Q, 2 * Q + 1))),
        (1, Q - 1, ReadPlan((1, Q - 1), (Q, Q), (Q - 1, Q - 1))),  # inside one bucket: raw only
        (Q + 1, 2 * Q + 1, ReadPlan((Q + 1, 2 * Q + 1), (2 * Q, 2 * Q), (2 * Q + 1, 2 * Q + 1))),  # no whole bucket
        (5, 5, ReadPlan((5, 5), (Q, Q), (5, 5))),  # empty
    ],
)
def test_plan_read_whole_buckets_and_edges(start: int, end: int, plan: ReadPlan) -> None:
    assert plan_read(start, end) == plan


def test_assemble_equals_a_direct_computation() -> None:
    points = [Point(n * 300_000 + 7, f"k{n}", Decimal(n % 4)) for n in range(40)]
    start, end = 200_000, 9_100_000
    plan = plan_read(start, end)

    def between(lo: int, hi: int) -> list[Point]:
        return [p for p in points if lo <= p.at_ms < hi]

    buckets = [totals_of(between(b, b + Q)) for b in range(plan.buckets[0], plan.buckets[1], Q)]
    got = assemble(between(*plan.left), buckets, between(*plan.right))
    assert got == totals_of(between(start, end))
