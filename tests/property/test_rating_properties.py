"""Hypothesis properties of metering and rating."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.engine.proration import prorated_base
from rating.aggregations import Point, merge_all, quantity, totals_of
from rating.catalog import Aggregation, Metric, MetricType, PlanMeter, PricingModel, Tier, TierMode
from rating.money import CURRENCY_EXPONENTS, Money, minor_to_major, to_minor
from rating.periods import BillingInterval, Period, boundary, from_epoch_ms, period_at, proration
from rating.pricing import price
from rating.rate import rate_meter
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters, MemoryUsageStore
from streams.operators.intervals import UsageQuery
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent, UsageRecord
from streams.operators.validate import SubscriptionRef
from streams.operators.windows import WindowAccumulator
from streams.ports import WindowRow

pytestmark = pytest.mark.property

BASE_MS = 1_767_225_600_000
DAY_MS = 86_400_000
AGGREGATIONS = {
    Aggregation.SUM: Metric("m_sum"),
    Aggregation.COUNT: Metric("m_count", aggregation=Aggregation.COUNT),
    Aggregation.MAX: Metric("m_max", aggregation=Aggregation.MAX),
    Aggregation.LATEST: Metric("m_latest", MetricType.GAUGE, Aggregation.LATEST),
    Aggregation.UNIQUE_COUNT: Metric("m_unique", aggregation=Aggregation.UNIQUE_COUNT, field="u"),
    Aggregation.TIME_WEIGHTED_SUM: Metric("m_tws", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM),
}
METRICS = {m.code: m for m in AGGREGATIONS.values()}
values = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False)
events = st.lists(
    st.tuples(
        st.sampled_from(sorted(METRICS)),
        values,
        st.integers(0, 3 * DAY_MS),  # event time within three days
        st.integers(0, 40),  # idempotency key: collisions make duplicates (same payload kept first)
        st.integers(0, 4),  # unique field value
    ),
    max_size=80,
)


def as_events(raw: list[tuple[str, Decimal, int, int, int]]) -> list[UsageEvent]:
    seen: dict[int, UsageEvent] = {}
    out = []
    for metric, value, at, key, user in raw:
        event = seen.setdefault(
            key, UsageEvent(f"e{key}", "t", "s", metric, float(value), BASE_MS + at, f"k{key}", {"u": f"u{user}"})
        )
        out.append(event)  # a repeated key repeats the first payload: an exact duplicate
    return out


def run(events_in_order: list[UsageEvent], batch_size: int, timezone: str) -> MemoryUsageStore:
    store = MemoryUsageStore()
    catalog = Catalog(METRICS.get, {"s": SubscriptionRef("s", "t", timezone)}.get)
    InProcessPipeline(
        catalog, store, MemoryDeadLetters(), lambda: BASE_MS * 2, tenant_of=lambda _: "t", batch_size=batch_size
    ).run(events_in_order)
    return store


@settings(max_examples=60, deadline=None)
@given(
    events,
    st.randoms(use_true_random=False),
    st.integers(1, 30),
    st.sampled_from(["UTC", "Asia/Kathmandu", "America/St_Johns"]),
    st.integers(0, 3 * DAY_MS),
    st.integers(0, 3 * DAY_MS),
)
def test_arrival_order_batching_and_duplicates_never_change_any_quantity(raw, rnd, batch_size, timezone, a, b) -> None:  # type: ignore[no-untyped-def]
    ordered = as_events(raw)
    shuffled = list(ordered)
    rnd.shuffle(shuffled)
    replayed = shuffled + [e for e in ordered if rnd.random() < 0.3]  # replay any subset
    lo, hi = BASE_MS + min(a, b), BASE_MS + max(a, b) + 1
    first = run(ordered, 1000, timezone)
    second = run(replayed, batch_size, timezone)
    distinct = {e.idempotency_key: e for e in reversed(ordered)}.values()
    for aggregation, metric in AGGREGATIONS.items():
        query = [UsageQuery("s", metric.code, lo, hi)]
        [one], [two] = first.totals(query), second.totals(query)
        direct = totals_of(
            Point(
                e.recorded_at_ms, e.idempotency_key, Decimal(repr(e.value)), e.metadata["u"] if metric.field else None
            )
            for e in distinct
            if e.metric_code == metric.code and lo <= e.recorded_at_ms < hi
        )
        assert quantity(aggregation, one, hi) == quantity(aggregation, two, hi) == quantity(aggregation, direct, hi)


tier_prices = st.lists(st.decimals(min_value=0, max_value=5, places=4), min_size=1, max_size=4)
quantities = st.fractions(min_value=0, max_value=10_000, max_denominator=1000)


def tiered(prices: list[Decimal], mode: TierMode, step: int) -> PlanMeter:
    bounds = [Decimal(step * (i + 1)) for i in range(len(prices) - 1)] + [None]
    return PlanMeter(
        "m", PricingModel.TIERED, tier_mode=mode, tiers=tuple(Tier(b, p) for b, p in zip(bounds, prices, strict=True))
    )


@given(tier_prices, st.integers(1, 3000), quantities)
def test_falling_prices_graduated_is_between_volume_and_everything_at_the_first_tier_price(prices, step, q) -> None:  # type: ignore[no-untyped-def]
    """With tier unit prices that never rise and no flat fees, for any billable quantity q:
    q × p_last ≤ volume(q) ≤ graduated(q) ≤ q × p_first (everything priced at the first tier's price).
    Flat fees break it (a reached tier's fee is charged once by volume, every reached fee by graduated)."""
    prices = sorted(prices, reverse=True)
    graduated = price(tiered(prices, TierMode.GRADUATED, step), q).amount
    volume = price(tiered(prices, TierMode.VOLUME, step), q).amount
    assert q * Fraction(prices[-1]) <= volume <= graduated <= q * Fraction(prices[0])
    if q <= step:  # within the first tier both models are the first tier's price
        assert volume == graduated == q * Fraction(prices[0])


@given(tier_prices, st.integers(1, 3000), quantities)
def test_rising_prices_reverse_the_bounds(prices, step, q) -> None:  # type: ignore[no-untyped-def]
    """With tier unit prices that never fall (and no flat fees): q × p_first ≤ graduated(q) ≤ volume(q) ≤ q × p_last."""
    prices = sorted(prices)
    graduated = price(tiered(prices, TierMode.GRADUATED, step), q).amount
    volume = price(tiered(prices, TierMode.VOLUME, step), q).amount
    assert q * Fraction(prices[0]) <= graduated <= volume <= q * Fraction(prices[-1])


@given(tier_prices, st.integers(1, 3000), quantities, quantities)
def test_graduated_charges_never_decrease_with_usage(prices, step, q1, q2) -> None:  # type: ignore[no-untyped-def]
    meter = tiered(prices, TierMode.GRADUATED, step)
    low, high = sorted((q1, q2))
    assert price(meter, low).amount <= price(meter, high).amount


@given(
    st.decimals(min_value=0, max_value=10**9, places=4),
    st.sampled_from(sorted(CURRENCY_EXPONENTS)),
    st.integers(0, 31 * 86_400),
)
def test_complementary_prorations_add_up_to_the_full_price_within_one_minor_unit(base, currency, seconds) -> None:  # type: ignore[no-untyped-def]
    used = Fraction(seconds, 31 * 86_400)  # a plan change at any second of a 31-day period
    full = prorated_base(base, currency, Fraction(1)).amount
    parts = prorated_base(base, currency, used).amount + prorated_base(base, currency, 1 - used).amount
    assert abs(parts - full) <= 1


points = st.lists(
    st.builds(
        lambda at, key, value, user: Point(BASE_MS + at, f"k{key}", value, f"u{user}"),
        st.integers(0, 2 * DAY_MS),
        st.integers(0, 10**6),
        values,
        st.integers(0, 6),
    ),
    max_size=40,
    unique_by=lambda p: p.key,  # distinct dedup identities
)
meters = st.sampled_from(
    [
        PlanMeter("m", PricingModel.PER_UNIT, unit_price=Decimal("0.0035"), included_units=Decimal(7)),
        tiered([Decimal("0.5"), Decimal("0.25"), Decimal("0.001")], TierMode.GRADUATED, 50),
        tiered([Decimal("0.5"), Decimal("0.25"), Decimal("0.001")], TierMode.VOLUME, 50),
        PlanMeter("m", PricingModel.PACKAGE, unit_price=Decimal("2.5"), package_size=Decimal(40)),
    ]
)


@settings(max_examples=150, deadline=None)
@given(points, st.lists(st.integers(0, 2 * DAY_MS), max_size=6), st.randoms(use_true_random=False), meters)
def test_splitting_a_period_into_any_windows_never_changes_the_rated_amount(pts, cuts, rnd, meter) -> None:  # type: ignore[no-untyped-def]
    """Cut the period at any instants; totals of the windows (each built from its events in any arrival
    order, as the operators do) merge to the totals of the whole period, so every quantity and its
    rated amount are the same."""
    end = BASE_MS + 2 * DAY_MS + 1
    edges = [BASE_MS, *sorted(BASE_MS + c for c in cuts), end]
    windows = []
    for lo, hi in itertools.pairwise(edges):
        inside = [p for p in pts if lo <= p.at_ms < hi]
        rnd.shuffle(inside)
        acc = WindowAccumulator(keep_points=True, keep_uniques=True)
        for p in inside:
            acc.observe(p)
        windows.append(acc.totals())
    whole, merged = totals_of(pts), merge_all(windows)
    for aggregation in Aggregation:
        q = quantity(aggregation, whole, end)
        assert quantity(aggregation, merged, end) == q
        assert rate_meter(meter, quantity(aggregation, merged, end), "USD") == rate_meter(meter, q, "USD")


@given(st.integers(-(10**15), 10**15), st.sampled_from(sorted(CURRENCY_EXPONENTS)))
def test_minor_units_round_trip_through_major_units(minor, currency) -> None:  # type: ignore[no-untyped-def]
    major = minor_to_major(minor, currency)
    assert to_minor(major, currency) == minor
    assert Money(minor, currency) == Money(to_minor(major, currency), currency)


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=12), st.sampled_from(["USD", "IDR", "BHD", "JPY"]))
def test_to_minor_is_within_half_a_minor_unit_and_halves_go_up(major, currency) -> None:  # type: ignore[no-untyped-def]
    minor = to_minor(major, currency)
    exact = Fraction(major) * 10 ** CURRENCY_EXPONENTS[currency]
    assert abs(minor - exact) <= Fraction(1, 2)
    if abs(minor - exact) == Fraction(1, 2):
        assert abs(minor) > abs(exact)  # half-up: away from zero


ZONES = ["UTC", "America/New_York", "Asia/Jakarta", "Australia/Lord_Howe", "Asia/Kathmandu", "Europe/London"]
instants = st.integers(0, 3 * 365 * DAY_MS).map(lambda ms: from_epoch_ms(BASE_MS + ms))


@given(instants, st.integers(0, 400 * DAY_MS), st.sampled_from(list(BillingInterval)), st.sampled_from(ZONES))
def test_period_at_holds_the_instant_and_periods_tile_time(anchor, later, interval, timezone) -> None:  # type: ignore[no-untyped-def]
    instant = anchor + timedelta(milliseconds=later)
    index, period = period_at(anchor, interval, timezone, instant)
    assert period.contains(instant)
    assert period.start == boundary(anchor, interval, index, timezone)
    assert period.end == boundary(anchor, interval, index + 1, timezone)
    assert period.end > period.start


@given(
    st.decimals(min_value=0, max_value=10**9, places=4),
    st.sampled_from(["USD", "IDR", "BHD", "JPY"]),
    instants,
    st.integers(0, 10**6),
    st.sampled_from(list(BillingInterval)),
    st.sampled_from(ZONES),
)
def test_complementary_prorations_of_a_real_period_add_up_within_one_minor_unit(  # type: ignore[no-untyped-def]
    base, currency, anchor, permille, interval, timezone
) -> None:
    """Split a nominal period (local calendar, DST included) at any instant: the two prorated base
    fees add up to the full fee within one minor unit."""
    full = Period(anchor, boundary(anchor, interval, 1, timezone))
    cut = full.start + (full.end - full.start) * permille / 10**6
    first, second = Period(full.start, cut), Period(cut, full.end)
    assert proration(first, full) + proration(second, full) == 1
    whole = prorated_base(base, currency, Fraction(1)).amount
    parts = prorated_base(base, currency, proration(first, full)).amount
    parts += prorated_base(base, currency, proration(second, full)).amount
    assert abs(parts - whole) <= 1


class RecordingStore(MemoryUsageStore):
    """A MemoryUsageStore that remembers every batch written to it, to redeliver them later."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[list[UsageRecord], list[WindowRow]]] = []

    def write(self, records, windows) -> None:  # type: ignore[no-untyped-def]
        self.batches.append((list(records), list(windows)))
        super().write(records, windows)


@settings(max_examples=60, deadline=None)
@given(events, st.integers(1, 15), st.randoms(use_true_random=False), st.integers(0, 3 * DAY_MS), st.data())
def test_redelivering_any_subset_of_written_batches_never_changes_totals(raw, batch_size, rnd, a, data) -> None:  # type: ignore[no-untyped-def]
    """A sink that crashes may write any of its earlier batches again, in any order (absolute,
    versioned window rows and idempotent records): every interval's totals stay the same."""
    store = RecordingStore()
    catalog = Catalog(METRICS.get, {"s": SubscriptionRef("s", "t", "Asia/Kathmandu")}.get)
    InProcessPipeline(
        catalog, store, MemoryDeadLetters(), lambda: BASE_MS * 2, tenant_of=lambda _: "t", batch_size=batch_size
    ).run(as_events(raw))
    b = data.draw(st.integers(a, 3 * DAY_MS + 1))
    queries = [UsageQuery("s", code, BASE_MS + a, BASE_MS + b) for code in sorted(METRICS)]
    before = store.totals(queries)
    replayed = [batch for batch in store.batches if rnd.random() < 0.5]
    rnd.shuffle(replayed)
    for records, rows in replayed:
        MemoryUsageStore.write(store, records, rows)
    assert store.totals(queries) == before
