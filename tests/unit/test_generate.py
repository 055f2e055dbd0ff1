"""The synthetic usage generator: the same seed gives the same events, every kind comes in the exact
proportion asked for, and the ground truth agrees with how the events were made."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from streams.generate import UNKNOWN_METRIC, UNKNOWN_SUBSCRIPTION, Kind, generate, planned
from streams.operators.records import Reason, UsageEvent

pytestmark = pytest.mark.unit


@dataclass
class GroundTruth:
    """What the pipeline must make of a sequence of events (in the order a partition delivers them)."""

    distinct: dict[tuple[str, str], UsageEvent] = field(default_factory=dict)
    """The first valid event of each identity ``(subscription_id, idempotency_key)``."""
    duplicates: int = 0
    conflicts: int = 0
    invalid: Counter[Reason] = field(default_factory=Counter)
    out_of_order: int = 0
    """Distinct events recorded before the newest event delivered ahead of them."""

    def totals(self) -> dict[tuple[str, str], tuple[int, Decimal]]:
        """Count and exact sum of the distinct events per ``(subscription_id, metric_code)``."""
        out: dict[tuple[str, str], tuple[int, Decimal]] = {}
        for event in self.distinct.values():
            count, total = out.get((event.subscription_id, event.metric_code), (0, Decimal(0)))
            out[(event.subscription_id, event.metric_code)] = (count + 1, total + Decimal(repr(event.value)))
        return out


def _payload(event: UsageEvent) -> tuple[object, ...]:
    return (event.tenant_id, event.metric_code, event.value, event.recorded_at_ms, sorted(event.metadata.items()))


def ground_truth(events: Iterable[UsageEvent], subscriptions: Iterable[str], metrics: Iterable[str]) -> GroundTruth:
    """Validate, then dedup (first write wins), plainly: the oracle for ``generate``'s events, for
    a catalog that knows exactly ``subscriptions`` and ``metrics`` (any metric type: generated
    values are never negative) and a clock after every event."""
    known_subscriptions, known_metrics = set(subscriptions), set(metrics)
    truth = GroundTruth()
    newest: int | None = None
    for event in events:
        reason = None
        if not event.subscription_id:
            reason = Reason.MISSING_FIELD
        elif not event.idempotency_key:
            reason = Reason.MISSING_IDEMPOTENCY_KEY
        elif event.metric_code not in known_metrics:
            reason = Reason.UNKNOWN_METRIC
        elif event.subscription_id not in known_subscriptions:
            reason = Reason.UNKNOWN_SUBSCRIPTION
        elif not math.isfinite(event.value):
            reason = Reason.INVALID_VALUE
        if reason is not None:
            truth.invalid[reason] += 1
            continue
        identity = (event.subscription_id, event.idempotency_key)
        first = truth.distinct.get(identity)
        if first is None:
            truth.distinct[identity] = event
            if newest is not None and event.recorded_at_ms < newest:
                truth.out_of_order += 1
        elif _payload(first) == _payload(event):
            truth.duplicates += 1
        else:
            truth.conflicts += 1
        newest = event.recorded_at_ms if newest is None else max(newest, event.recorded_at_ms)
    return truth


SUBS = [f"sub_{n}" for n in range(20)]
METRICS = ["api_calls", "storage_gb"]
START = 1_767_225_600_000
MIX = {"duplicate_rate": 0.1, "conflict_rate": 0.03, "out_of_order_rate": 0.07, "invalid_rate": 0.05}


def events(count: int = 4000, seed: int = 7, **rates: float) -> list[UsageEvent]:
    mix = rates or MIX
    return list(
        generate(
            count,
            SUBS,
            METRICS,
            start_ms=START,
            seed=seed,
            duplicate_rate=mix.get("duplicate_rate", 0.0),
            conflict_rate=mix.get("conflict_rate", 0.0),
            out_of_order_rate=mix.get("out_of_order_rate", 0.0),
            invalid_rate=mix.get("invalid_rate", 0.0),
        )
    )


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert events() == events()
    assert events() != events(seed=8)


def test_count_is_exact_even_for_tiny_runs() -> None:
    assert events(count=0) == []
    assert len(events(count=1)) == 1 and ground_truth(events(count=1), SUBS, METRICS).distinct


@pytest.mark.parametrize("count", [1, 10, 999, 4000])
def test_fractions_are_exact(count: int) -> None:
    truth = ground_truth(events(count), SUBS, METRICS)
    plan = planned(count, **MIX)
    assert sum(plan.values()) == count
    assert truth.duplicates == plan[Kind.DUPLICATE]
    assert truth.conflicts == plan[Kind.CONFLICT]
    assert sum(truth.invalid.values()) == plan[Kind.INVALID]
    assert truth.out_of_order == plan[Kind.OUT_OF_ORDER]
    assert len(truth.distinct) == plan[Kind.FRESH] + plan[Kind.OUT_OF_ORDER]


def test_without_a_mix_every_event_is_fresh_and_in_time_order() -> None:
    made = events(2000, duplicate_rate=0.0)
    times = [e.recorded_at_ms for e in made]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < START + 30 * 86_400_000
    assert len({(e.subscription_id, e.idempotency_key) for e in made}) == 2000


def test_every_kind_of_invalid_event_appears_and_is_really_invalid() -> None:
    made = events(4000)
    truth = ground_truth(made, SUBS, METRICS)
    assert set(truth.invalid) == {
        Reason.INVALID_VALUE,
        Reason.UNKNOWN_METRIC,
        Reason.UNKNOWN_SUBSCRIPTION,
        Reason.MISSING_IDEMPOTENCY_KEY,
    }
    assert any(math.isnan(e.value) for e in made) and any(math.isinf(e.value) for e in made)
    assert any(e.metric_code == UNKNOWN_METRIC for e in made)
    assert any(e.subscription_id == UNKNOWN_SUBSCRIPTION for e in made)


def test_duplicates_copy_an_earlier_event_and_conflicts_change_only_id_and_value() -> None:
    made = events(4000)
    first: dict[tuple[str, str], UsageEvent] = {}
    for event in made:
        identity = (event.subscription_id, event.idempotency_key)
        if not event.idempotency_key or identity not in first:
            first.setdefault(identity, event)
            continue
        original = first[identity]
        if event != original:
            assert event.value != original.value and event.id != original.id
            assert (event.metric_code, event.recorded_at_ms, event.metadata) == (
                original.metric_code,
                original.recorded_at_ms,
                original.metadata,
            )


def test_out_of_order_events_reach_back_at_most_the_lateness() -> None:
    made = list(generate(3000, SUBS, METRICS, start_ms=START, duplicate_rate=0, out_of_order_rate=0.2, seed=3))
    newest = made[0].recorded_at_ms
    for event in made:
        assert event.recorded_at_ms >= newest - 2 * 3_600_000
        newest = max(newest, event.recorded_at_ms)


def test_totals_are_exact_decimal_sums_of_the_distinct_events() -> None:
    made = events(3000)
    truth = ground_truth(made, SUBS, METRICS)
    totals = truth.totals()
    assert sum(count for count, _ in totals.values()) == len(truth.distinct)
    expected = sum((Decimal(repr(e.value)) for e in truth.distinct.values()), Decimal(0))
    assert sum((total for _, total in totals.values()), Decimal(0)) == expected
    assert all(total == total.quantize(Decimal("0.01")) for _, total in totals.values())


@pytest.mark.parametrize("rates", [{"duplicate_rate": 1.0}, {"invalid_rate": 0.6, "conflict_rate": 0.5}])
def test_rates_leaving_no_fresh_event_are_refused(rates: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="no room"):
        planned(100, **rates)


def test_a_rate_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        planned(100, duplicate_rate=-0.1)
