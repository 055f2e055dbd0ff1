"""Hypothesis properties of metering and rating."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.engine.proration import prorated_base
from rating.aggregations import Point, quantity, totals_of
from rating.catalog import Aggregation, Metric, MetricType, PlanMeter, PricingModel, Tier, TierMode
from rating.money import CURRENCY_EXPONENTS
from rating.pricing import price
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters, MemoryUsageStore
from streams.operators.intervals import UsageQuery
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef

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
def test_graduated_is_at_most_everything_at_the_first_tier_price(prices, step, q) -> None:  # type: ignore[no-untyped-def]
    prices = sorted(prices, reverse=True)  # volume discounts: prices never rise with the tier
    graduated = price(tiered(prices, TierMode.GRADUATED, step), q).amount
    assert graduated <= q * Fraction(prices[0])
    assert graduated >= q * Fraction(prices[-1])
    volume = price(tiered(prices, TierMode.VOLUME, step), q).amount
    assert volume <= graduated  # with falling prices, volume pricing never charges more


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
