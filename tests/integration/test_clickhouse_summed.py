"""ClickHouseUsageStore.summed (count, total and maximum added up in SQL) gives exactly what
``totals`` gives for those fields, value and exponent, so StoreUsageReader's SUM, COUNT and MAX
quantities do not change when it reads through it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from billing.usage_reader import StoreUsageReader
from invoicing.ports import UsageRequest
from rating.aggregations import SummedTotals, WindowTotals, summed_of
from rating.catalog import Aggregation
from streams.clickhouse.store import FEW_SPANS, ClickHouseUsageStore
from streams.operators.intervals import UsageQuery
from tests.contract.test_usage_store import BASE_MS, METRICS, direct, fill, random_events


class TotalsOnly:
    """The store whose ``summed`` is the fields of its ``totals``: the reader's path before
    ClickHouse added them up in SQL."""

    def __init__(self, store: ClickHouseUsageStore) -> None:
        self.store = store

    def totals(self, queries: Sequence[UsageQuery]) -> list[WindowTotals]:
        return self.store.totals(queries)

    def summed(self, queries: Sequence[UsageQuery]) -> list[SummedTotals]:
        return [summed_of(t) for t in self.store.totals(queries)]


def intervals(seed: int, n: int) -> list[UsageQuery]:
    rng = random.Random(seed)
    queries = []
    for _ in range(n):
        lo = BASE_MS + rng.randrange(-3_600_000, 3 * 86_400_000)
        if rng.random() < 0.3:
            lo -= lo % 900_000  # on a bucket boundary: no left edge
        hi = lo + rng.choice([0, 1, 899_999, 900_000, 86_400_000, rng.randrange(1, 3 * 86_400_000)])
        queries.append(UsageQuery(rng.choice("abz"), rng.choice([*sorted(METRICS), "none"]), lo, hi))
    return queries


def test_summed_equals_the_fields_of_totals(chdb_client: Any, clickhouse_db: str) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    records = fill(store, random_events(11, 500), batch_size=40)
    queries = intervals(12, 300)
    summed, totals = store.summed(queries), store.totals(queries)
    assert sum(t.event_count for t in summed) > 100  # most intervals hold events
    for query, got, want in zip(queries, summed, totals, strict=True):
        fields = (got.event_count, got.total, got.maximum)
        assert fields == (want.event_count, want.total, want.maximum), query
        assert tuple(map(str, fields)) == tuple(map(str, (want.event_count, want.total, want.maximum))), query
        truth = direct(records, query.subscription_id, query.metric_code, query.start_ms, query.end_ms)
        assert (got.event_count, got.total, got.maximum) == (truth.event_count, truth.total, truth.maximum), query
    # a few queries at a time take the other SQL (one SELECT per span, no spans table)
    for first in range(0, 60, 2):
        few = queries[first : first + 2]
        assert len(few) * 3 <= FEW_SPANS  # each is at most a bucket span and two edges
        for got, want in zip(store.summed(few), totals[first : first + 2], strict=True):
            fields = (got.event_count, got.total, got.maximum)
            assert tuple(map(str, fields)) == tuple(map(str, (want.event_count, want.total, want.maximum)))


def test_reader_quantities_unchanged_through_summed(chdb_client: Any, clickhouse_db: str) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    fill(store, random_events(13, 400), batch_size=40)
    aggregations = list(Aggregation)
    requests = [
        UsageRequest(
            q.subscription_id,
            q.metric_code,
            aggregations[n % len(aggregations)],
            datetime.fromtimestamp(q.start_ms / 1000, UTC),
            datetime.fromtimestamp(q.end_ms / 1000, UTC),
        )
        for n, q in enumerate(intervals(14, 240))
    ]
    fast = StoreUsageReader(store).quantities(requests)
    plain = StoreUsageReader(TotalsOnly(store)).quantities(requests)  # type: ignore[arg-type]
    assert [str(q) for q in fast] == [str(q) for q in plain]
    assert any(q != 0 for q in fast)


def test_nothing_to_read(chdb_client: Any, clickhouse_db: str) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    empty = [UsageQuery("a", "calls", BASE_MS, BASE_MS), UsageQuery("nobody", "calls", 0, 2 * BASE_MS)]
    assert store.summed(empty) == [summed_of(t) for t in store.totals(empty)]
    assert store.summed([]) == []
