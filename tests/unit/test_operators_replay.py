"""Redelivery after a crash: whatever subset of the state a crashed worker managed to persist,
replaying its uncommitted messages yields the same windows as one clean pass."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.catalog import Aggregation, Metric, MetricType
from streams.operators.dedup import DedupEntry, Verdict
from streams.operators.process import Catalog, process_event
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef
from streams.operators.windows import POSITIONS_PER_OFFSET, WindowAccumulator, WindowKey

pytestmark = pytest.mark.property

BASE_MS = 1_767_225_600_000
METRICS = {
    "calls": Metric("calls"),
    "gb": Metric("gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM),
    "users": Metric("users", aggregation=Aggregation.UNIQUE_COUNT, field="user"),
}
SUBS = {s: SubscriptionRef(s, "t", "Asia/Kolkata") for s in ("a", "b")}
CATALOG = Catalog(METRICS.get, SUBS.get)

events = st.lists(
    st.builds(
        lambda sub, metric, value, minute, key, user: UsageEvent(
            f"e{key}", "t", sub, metric, float(value), BASE_MS + minute * 60_000, f"k{key}", {"user": f"u{user}"}
        ),
        st.sampled_from(sorted(SUBS)),
        st.sampled_from(sorted(METRICS)),
        st.integers(0, 50),
        st.integers(0, 3 * 24 * 60),
        st.integers(0, 30),  # few keys: plenty of duplicates and conflicts
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=60,
)


def run(messages, dedup, windows, start=0):  # type: ignore[no-untyped-def]
    """Process messages (lists of events) from offset ``start``; returns the keys each offset touched."""
    touched: dict[int, tuple[set[str], set[WindowKey]]] = {}
    for offset in range(start, len(messages)):
        keys: set[str] = set()
        wkeys: set[WindowKey] = set()
        for index, event in enumerate(messages[offset]):
            outcome = process_event(
                event, CATALOG, dedup, windows, BASE_MS * 2, partition=0, position=offset * POSITIONS_PER_OFFSET + index
            )
            if outcome.verdict is Verdict.ACCEPTED:
                keys.add(f"{event.subscription_id}\x1f{event.idempotency_key}")
            if outcome.changed is not None:
                wkeys.add(outcome.changed[0])
        touched[offset] = (keys, wkeys)
    return touched


def snapshot(windows: dict[WindowKey, WindowAccumulator]) -> dict[WindowKey, object]:
    return {key: acc.totals() for key, acc in windows.items()}


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 8), st.data())
def test_replay_after_partial_persistence_equals_one_clean_pass(evs, per_message, data) -> None:  # type: ignore[no-untyped-def]
    messages = [evs[i : i + per_message] for i in range(0, len(evs), per_message)]
    clean_dedup: dict[str, DedupEntry] = {}
    clean_windows: dict[WindowKey, WindowAccumulator] = {}
    run(messages, clean_dedup, clean_windows)

    # A worker commits offsets up to ``committed``, goes on, and dies. Of its later state writes,
    # each key's changelog keeps some prefix: the snapshot after some message, or none.
    committed = data.draw(st.integers(0, len(messages)))
    dedup: dict[str, DedupEntry] = {}
    windows: dict[WindowKey, WindowAccumulator] = {}
    run(messages[:committed], dedup, windows)
    durable_dedup, durable_windows = dict(dedup), {k: copy.deepcopy(v) for k, v in windows.items()}
    for offset in range(committed, len(messages)):
        keys, wkeys = run(messages[: offset + 1], dedup, windows, start=offset)[offset]
        for key in keys:
            if data.draw(st.booleans()):
                durable_dedup[key] = dedup[key]
        for wkey in wkeys:
            if data.draw(st.booleans()):
                durable_windows[wkey] = copy.deepcopy(windows[wkey])
    # Restart: redeliver everything after the committed offset against the durable state.
    run(messages, durable_dedup, durable_windows, start=committed)

    assert snapshot(durable_windows) == snapshot(clean_windows)


def test_a_redelivered_message_is_a_replay_and_changes_nothing() -> None:
    event = UsageEvent("e1", "t", "a", "calls", 2.5, BASE_MS, "k1", {})
    dedup: dict[str, DedupEntry] = {}
    windows: dict[WindowKey, WindowAccumulator] = {}
    first = process_event(event, CATALOG, dedup, windows, BASE_MS, partition=0, position=7)
    again = process_event(event, CATALOG, dedup, windows, BASE_MS, partition=0, position=7)
    later = process_event(event, CATALOG, dedup, windows, BASE_MS, partition=0, position=9)
    assert (first.verdict, again.verdict, later.verdict) == (Verdict.ACCEPTED, Verdict.REPLAY, Verdict.DUPLICATE)
    assert again.changed == first.changed  # re-emitted, so a lost output is written again
    assert later.changed is None
    assert {acc.totals().total for acc in windows.values()} == {Decimal("2.5")}
    assert {acc.count for acc in windows.values()} == {1}
