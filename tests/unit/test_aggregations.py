"""Each aggregation over a window's distinct events, and merging adjacent windows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.aggregations import EMPTY, Point, merge, merge_all, quantity, totals_of
from rating.catalog import Aggregation, PlanMeter, PricingModel
from rating.late import late_usage_delta
from rating.money import Money
from rating.rate import rate_meter

pytestmark = pytest.mark.unit

H = 3_600_000
D = Decimal
POINTS = [
    Point(0, "k1", D("2"), "alice"),
    Point(H, "k2", D("5"), "bob"),
    Point(3 * H, "k3", D("1.5"), "alice"),
    Point(3 * H, "k0", D("9"), None),  # same time as k3, smaller key: k3 is the latest
]
END = 4 * H


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        (Aggregation.SUM, D("17.5")),
        (Aggregation.COUNT, D(4)),
        (Aggregation.MAX, D(9)),
        (Aggregation.LATEST, D("1.5")),  # greatest recorded_at, ties by greatest idempotency key
        (Aggregation.UNIQUE_COUNT, D(2)),  # events without the field do not count
        # 2×1h + 5×2h + 9×0h (k0 precedes k3 at the same instant) + 1.5×1h
        (Aggregation.TIME_WEIGHTED_SUM, D("13.5")),
    ],
)
def test_each_aggregation(aggregation: Aggregation, expected: Decimal) -> None:
    assert quantity(aggregation, totals_of(POINTS), END) == expected
    assert quantity(aggregation, totals_of(reversed(POINTS)), END) == expected  # any order


@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_an_empty_interval_is_zero(aggregation: Aggregation) -> None:
    assert quantity(aggregation, EMPTY, END) == 0


def test_time_weighted_sum_is_zero_before_the_first_event_and_runs_to_the_interval_end() -> None:
    totals = totals_of([Point(2 * H, "k", D(10))])
    assert quantity(Aggregation.TIME_WEIGHTED_SUM, totals, 2 * H) == 0
    assert quantity(Aggregation.TIME_WEIGHTED_SUM, totals, 5 * H) == 30
    # a third of an hour, kept exact until rounded half-even at 12 places
    assert quantity(Aggregation.TIME_WEIGHTED_SUM, totals_of([Point(0, "k", D(1))]), 1_200_000) == D("0.333333333333")


def test_max_of_negative_gauges_and_latest_keep_their_sign() -> None:
    totals = totals_of([Point(0, "a", D(-3)), Point(1, "b", D(-1))])
    assert quantity(Aggregation.MAX, totals, 2) == -1
    assert quantity(Aggregation.LATEST, totals, 2) == -1


@pytest.mark.parametrize("cut", range(len(POINTS) + 1))
def test_merging_adjacent_windows_equals_one_window(cut: int) -> None:
    ordered = sorted(POINTS)
    merged = merge(totals_of(ordered[:cut]), totals_of(ordered[cut:]))
    assert merged == totals_of(ordered)
    assert merge_all([totals_of([p]) for p in ordered]) == totals_of(ordered)


def test_merge_with_empty_windows_is_identity() -> None:
    totals = totals_of(POINTS)
    assert merge(EMPTY, totals) == totals == merge(totals, EMPTY)
    assert merge_all([]) == EMPTY


def test_late_usage_delta_is_the_difference_of_rounded_amounts() -> None:
    meter = PlanMeter("m", PricingModel.PER_UNIT, unit_price=D("0.004"))
    billed = rate_meter(meter, D(1), "USD")  # 0.4¢ → 0
    now = rate_meter(meter, D(2), "USD")  # 0.8¢ → 1
    delta = late_usage_delta(billed, now)
    assert delta is not None
    assert (delta.metric_code, delta.billed_quantity, delta.quantity, delta.amount) == (
        "m",
        D(1),
        D(2),
        Money(1, "USD"),
    )
    assert late_usage_delta(billed, rate_meter(meter, D(1), "USD")) is None
    lower = late_usage_delta(now, billed)  # a LATEST or MAX gauge can also go down
    assert lower is not None and lower.amount == Money(-1, "USD")
