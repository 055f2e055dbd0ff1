"""Dedup by (subscription_id, idempotency_key): first write wins; duplicate, conflict and replay verdicts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.operators.dedup import DedupEntry, Verdict, decide, dedup_key
from streams.operators.process import process_event
from streams.operators.records import Reason, UsageEvent, UsageRecord
from streams.operators.validate import validate
from streams.operators.windows import Granularity, WindowAccumulator, WindowKey
from tests.unit.operator_inputs import BASE, CATALOG, METRICS, SUBS, event

pytestmark = pytest.mark.unit


def test_dedup_verdicts() -> None:
    entry = DedupEntry("fp", partition=0, position=7)
    assert decide(None, "fp") is Verdict.ACCEPTED
    assert decide(entry, "fp", 0, 9) is Verdict.DUPLICATE
    assert decide(entry, "other", 0, 9) is Verdict.CONFLICT
    assert decide(entry, "fp", 0, 7) is Verdict.REPLAY  # the very same message again
    assert decide(entry, "other", 0, 7) is Verdict.REPLAY
    assert decide(entry, "fp", 1, 7) is Verdict.DUPLICATE  # same position, other partition
    assert decide(DedupEntry("fp"), "fp") is Verdict.DUPLICATE  # no positions tracked: never a replay
    assert decide(DedupEntry("fp"), "x") is Verdict.CONFLICT
    assert dedup_key("s", "k") != dedup_key("s\x1fk", "")


def test_fingerprint_tells_duplicates_from_conflicts() -> None:
    def record(e: UsageEvent) -> UsageRecord:
        checked = validate(e, METRICS.get, SUBS.get, BASE)
        assert isinstance(checked, UsageRecord)
        return checked

    base = record(event())
    assert record(event(id="other-id")).fingerprint == base.fingerprint  # the id is not the payload
    assert record(event(value=1.0000000000001)).fingerprint == base.fingerprint  # equal after the 12-place read
    for changes in ({"value": 2.0}, {"recorded_at_ms": BASE + 1}, {"metadata": {"a": "b"}}, {"metric_code": "temp"}):
        assert record(event(**changes)).fingerprint != base.fingerprint, changes


def test_process_event_first_write_wins() -> None:
    dedup: dict[str, DedupEntry] = {}
    windows: dict[WindowKey, WindowAccumulator] = {}
    first = process_event(event(value=2.0), CATALOG, dedup, windows, BASE)
    dup = process_event(event(value=2.0, id="e2"), CATALOG, dedup, windows, BASE)
    conflict = process_event(event(value=3.0), CATALOG, dedup, windows, BASE)
    other_sub = process_event(event(subscription_id="k", value=3.0), CATALOG, dedup, windows, BASE)
    assert [o.verdict for o in (first, dup, conflict, other_sub)] == [
        Verdict.ACCEPTED,
        Verdict.DUPLICATE,
        Verdict.CONFLICT,
        Verdict.ACCEPTED,  # the identity is (subscription, key)
    ]
    assert conflict.rejection is not None and conflict.rejection.reason is Reason.IDEMPOTENCY_CONFLICT
    assert dup.changed is None and conflict.changed is None
    quarter = windows[WindowKey("s", "calls", Granularity.QUARTER, BASE)]
    assert (quarter.count, quarter.total) == (1, Decimal(2))


def test_an_invalid_event_touches_no_state() -> None:
    dedup: dict[str, DedupEntry] = {}
    windows: dict[WindowKey, WindowAccumulator] = {}
    outcome = process_event(event(value=-1.0), CATALOG, dedup, windows, BASE)
    assert outcome.verdict is None and outcome.rejection is not None
    assert dedup == {} and windows == {}
