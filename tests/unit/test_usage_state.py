"""A partition's state written as changelog records and read back is the same state: what a worker
restores on another host is what the last committed batch left, purges included."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.aggregations import Point
from rating.catalog import Aggregation, Metric, MetricType
from streams.aggregate.usage_state import MARKER, PartitionState
from streams.operators.dedup import DedupEntry
from streams.operators.windows import BUCKET_MS, observe

pytestmark = pytest.mark.unit

DAY = 86_400_000
T0 = 1_767_225_600_000


def replayed(records: list[tuple[bytes, bytes | None]], into: PartitionState | None = None) -> PartitionState:
    state = into or PartitionState(0)
    for key, value in records:
        state.apply(key, value)
    return state


def filled() -> PartitionState:
    state = PartitionState(0, source_topic_id="abc")
    gauge = Metric("storage_gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM)
    for n, at in enumerate((T0, T0 + 3_600_000, T0 + 40 * DAY)):
        key = f"s1\x1fk{n}"
        state.dedup[key] = DedupEntry(f"fp{n}", 0, n)
        state.touch_dedup(key, at)
        point = Point(at, f"k{n}", Decimal("1.5") * (n + 1), None)
        window, _spans = observe(state.windows, "s1", gauge, "Asia/Kolkata", point, n)
        state.touch_window(window)
    state.next_offset = 3
    return state


def test_changelog_records_restore_the_same_state() -> None:
    state = filled()
    restored = replayed(state.changelog())
    assert restored.dedup == state.dedup
    assert restored.recorded_at == state.recorded_at
    assert restored.windows.keys() == state.windows.keys()
    for key, acc in state.windows.items():
        assert restored.windows[key].totals() == acc.totals()
        assert restored.windows[key].position == acc.position
    assert (restored.next_offset, restored.source_topic_id) == (3, "abc")


def test_changelog_writes_only_what_changed_since_the_last_batch() -> None:
    state = filled()
    state.changelog()
    state.next_offset = 4
    assert state.changelog() == [(MARKER, b"4 abc")]


def test_a_purge_forgets_old_entries_and_its_tombstones_forget_them_on_restore() -> None:
    state = filled()
    restored = replayed(state.changelog())
    purged = state.purge(T0 + 2 * DAY)
    assert purged > 0
    assert sorted(state.dedup) == ["s1\x1fk2"]
    assert state.windows and all(key.start_ms >= T0 + 2 * DAY - BUCKET_MS for key in state.windows)
    replayed(state.changelog(), restored)
    assert restored.dedup == state.dedup
    assert restored.windows.keys() == state.windows.keys()


def test_a_marker_without_topic_id_is_read_as_before() -> None:
    state = replayed([(MARKER, b"17")])
    assert (state.next_offset, state.source_topic_id) == (17, "")
