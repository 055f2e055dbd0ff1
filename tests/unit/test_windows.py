"""Event-time windows: 15-minute buckets and local hour/day/month roll-ups, incl. odd offsets and DST."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise

import pytest

from rating.aggregations import Point, merge, merge_all, totals_of
from rating.periods import epoch_ms
from streams.operators.windows import BUCKET_MS, Granularity, WindowAccumulator, WindowKey, observe, rollup_windows
from tests.unit.operator_inputs import BASE, METRICS

pytestmark = pytest.mark.unit

Q = BUCKET_MS


def ms(*args: int) -> int:
    return epoch_ms(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


def test_rollups_in_utc() -> None:
    at = ms(2026, 1, 31, 23, 50)
    assert rollup_windows(at - at % Q, "UTC") == (
        (Granularity.QUARTER, ms(2026, 1, 31, 23, 45), ms(2026, 2, 1)),
        (Granularity.HOUR, ms(2026, 1, 31, 23), ms(2026, 2, 1)),
        (Granularity.DAY, ms(2026, 1, 31), ms(2026, 2, 1)),
        (Granularity.MONTH, ms(2026, 1, 1), ms(2026, 2, 1)),
    )


def test_rollups_in_a_quarter_hour_offset_zone() -> None:
    # Kathmandu is UTC+5:45: local hours start at :15 UTC, the local day at 18:15 UTC the day before.
    at = ms(2026, 12, 31, 18, 20)  # 2027-01-01 00:05 local
    assert rollup_windows(at - at % Q, "Asia/Kathmandu") == (
        (Granularity.QUARTER, ms(2026, 12, 31, 18, 15), ms(2026, 12, 31, 18, 30)),
        (Granularity.HOUR, ms(2026, 12, 31, 18, 15), ms(2026, 12, 31, 19, 15)),
        (Granularity.DAY, ms(2026, 12, 31, 18, 15), ms(2027, 1, 1, 18, 15)),
        (Granularity.MONTH, ms(2026, 12, 31, 18, 15), ms(2027, 1, 31, 18, 15)),
    )


def test_rollups_across_dst() -> None:
    # 2026-11-01 in New York has 25 hours; its two 01:xx hours are different windows.
    first = rollup_windows(ms(2026, 11, 1, 5, 30), "America/New_York")  # 01:30 EDT
    second = rollup_windows(ms(2026, 11, 1, 6, 30), "America/New_York")  # 01:30 EST
    assert first[1] == (Granularity.HOUR, ms(2026, 11, 1, 5), ms(2026, 11, 1, 6))
    assert second[1] == (Granularity.HOUR, ms(2026, 11, 1, 6), ms(2026, 11, 1, 7))
    assert first[2] == second[2] == (Granularity.DAY, ms(2026, 11, 1, 4), ms(2026, 11, 2, 5))
    spring = rollup_windows(ms(2026, 3, 8, 12), "America/New_York")
    assert spring[2] == (Granularity.DAY, ms(2026, 3, 8, 5), ms(2026, 3, 9, 4))  # 23 hours
    assert spring[3] == (Granularity.MONTH, ms(2026, 3, 1, 5), ms(2026, 4, 1, 4))


def test_observe_adds_each_event_to_its_bucket_alone_and_names_its_rollups() -> None:
    state: dict[WindowKey, WindowAccumulator] = {}
    metric = METRICS["calls"]
    points = [Point(BASE + n * 7 * 60_000, f"k{n}", Decimal(n)) for n in range(20)]  # 2h13m of events
    for point in reversed(points):
        key, spans = observe(state, "s", metric, "UTC", point)
        assert key.granularity is Granularity.QUARTER and key.start_ms == point.at_ms - point.at_ms % Q
        assert spans == rollup_windows(key.start_ms, "UTC")
    assert {key.granularity for key in state} == {Granularity.QUARTER}
    assert len(state) == 9
    assert sum(acc.count for acc in state.values()) == 20
    assert sum(acc.total for acc in state.values()) == sum(range(20))
    ordered = [state[key].totals() for key in sorted(state, key=lambda k: k.start_ms)]
    day = totals_of(points)._replace(tw_integral=Decimal(0), uniques=frozenset())
    assert merge_all(ordered)._replace(tw_integral=Decimal(0)) == day  # what a store's day roll-up folds


def test_observe_with_positions_counts_each_position_once() -> None:
    state: dict[WindowKey, WindowAccumulator] = {}
    point = Point(BASE, "k", Decimal(1))
    observe(state, "s", METRICS["calls"], "UTC", point, position=5)
    observe(state, "s", METRICS["calls"], "UTC", point, position=5)  # redelivered
    assert {acc.count for acc in state.values()} == {1}
    observe(state, "s", METRICS["calls"], "UTC", Point(BASE + 1, "k2", Decimal(1)), position=6)
    assert {acc.count for acc in state.values()} == {2}


def test_accumulator_state_round_trips() -> None:
    acc = WindowAccumulator(keep_points=True, keep_uniques=True)
    for n, user in enumerate(["a", "b", "a"]):
        acc.observe(Point(BASE + n * 1000, f"k{n}", Decimal("0.5") * n, user))
    acc.position = 42
    again = WindowAccumulator.from_state(acc.to_state())
    assert again.totals() == acc.totals()
    assert (again.position, again.version) == (42, 3)


def test_day_windows_where_dst_starts_at_midnight() -> None:
    # Havana springs forward at 00:00 on 2026-03-08 (CST −5 → CDT −4): that day starts at 01:00 CDT = 05:00 UTC.
    eve = ms(2026, 3, 8, 4, 30)  # 23:30 CST on 2026-03-07
    day = rollup_windows(eve - eve % Q, "America/Havana")[2]
    assert day == (Granularity.DAY, ms(2026, 3, 7, 5), ms(2026, 3, 8, 5))


@pytest.mark.parametrize(
    ("timezone", "first", "last"),
    [
        ("America/Havana", ms(2026, 3, 6), ms(2026, 3, 11)),  # DST starts at midnight
        ("America/Havana", ms(2026, 10, 30), ms(2026, 11, 3)),  # and ends at 01:00
        ("America/New_York", ms(2026, 3, 7), ms(2026, 3, 10)),
        ("America/New_York", ms(2026, 10, 31), ms(2026, 11, 3)),
        ("Asia/Kathmandu", ms(2026, 1, 30), ms(2026, 2, 2)),
        ("Pacific/Apia", ms(2011, 12, 28), ms(2012, 1, 2)),  # 2011-12-30 did not happen there
    ],
)
def test_day_and_month_windows_tile_time_across_dst(timezone: str, first: int, last: int) -> None:
    for granularity in (Granularity.DAY, Granularity.MONTH):
        windows = {
            next((start, end) for g, start, end in rollup_windows(b, timezone) if g is granularity)
            for b in range(first, last, Q)
        }
        for b in range(first, last, Q):
            assert len([(s, e) for s, e in windows if s <= b < e]) == 1  # in exactly one window
        ordered = sorted(windows)
        assert all(end == start for (_, end), (start, _) in pairwise(ordered)), ordered


def test_the_day_dst_starts_at_midnight_is_23_hours_long() -> None:
    at = ms(2026, 3, 8, 12)
    day = rollup_windows(at - at % Q, "America/Havana")[2]
    assert day == (Granularity.DAY, ms(2026, 3, 8, 5), ms(2026, 3, 9, 4))  # 01:00 CDT to 00:00 CDT


def test_accumulator_and_totals_never_round_in_the_default_context() -> None:
    # values of 35 digits (written out: ``big + n`` would already round in the default context)
    points = [
        Point(BASE + n * 60_000, f"k{n}", Decimal(f"{98765432109876543210987 + n}.654321098765")) for n in range(10)
    ]
    acc = WindowAccumulator(keep_points=True)
    for p in points:
        acc.observe(p)
    # by hand: Σ (big + n) for n < 10, and Σ (big + n) × 60,000 ms for n < 9 (the last value has no successor)
    assert acc.total == totals_of(points).total == Decimal("987654321098765432109921.54321098765")
    integral = Decimal("53333333339333333333935493333.3933331")
    assert acc.totals().tw_integral == totals_of(points).tw_integral == integral
    halves = merge(totals_of(points[:4]), totals_of(points[4:]))
    assert (halves.total, halves.tw_integral) == (acc.total, integral)
