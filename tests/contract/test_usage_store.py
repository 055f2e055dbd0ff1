"""One contract for the UsageStore port, run on the memory store and on ClickHouse (chDB): exact
totals for any ``[a, b)``, idempotent writes, newest versions win."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import astuple
from decimal import Context, Decimal, localcontext
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.aggregations import Point, quantity, summed_of, totals_of
from rating.catalog import Aggregation, Metric, MetricType
from streams.clickhouse.columns import event_table, window_table
from streams.clickhouse.store import ClickHouseUsageStore
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters, MemoryUsageStore
from streams.operators.intervals import UsageQuery
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent, UsageRecord
from streams.operators.validate import SubscriptionRef
from streams.operators.windows import Granularity, WindowAccumulator, WindowKey, observe, rollup_windows
from streams.ports import UsageStore, WindowRow

pytestmark = pytest.mark.contract

BASE_MS = 1_767_225_600_000
METRICS = {
    "calls": Metric("calls"),
    "gb": Metric("gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM),
    "users": Metric("users", aggregation=Aggregation.UNIQUE_COUNT, field="user"),
}
SUBS = {s: SubscriptionRef(s, "t", tz) for s, tz in (("a", "Asia/Kathmandu"), ("b", "America/New_York"))}


@pytest.fixture(params=["memory", "clickhouse"])
def store(request: pytest.FixtureRequest) -> UsageStore:
    if request.param == "memory":
        return MemoryUsageStore()
    database = request.getfixturevalue("clickhouse_db")
    return ClickHouseUsageStore(request.getfixturevalue("chdb_client"), database)


def fill(store: UsageStore, events: list[UsageEvent], batch_size: int = 7) -> list[UsageRecord]:
    accepted: list[UsageRecord] = []
    pipeline = InProcessPipeline(
        Catalog(METRICS.get, SUBS.get),
        store,
        MemoryDeadLetters(),
        lambda: BASE_MS * 2,
        tenant_of=lambda _: "t",
        on_accepted=accepted.append,
        batch_size=batch_size,
    )
    pipeline.run(events)
    return accepted


def random_events(seed: int, n: int = 300) -> list[UsageEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        metric = rng.choice(sorted(METRICS))
        value = rng.choice([0.1, 0.2, 3.0, 7.25, 123456.789012, 1e-12, 0.0]) + rng.randrange(100)
        at = BASE_MS + rng.randrange(3 * 86_400_000)
        out.append(
            UsageEvent(
                f"e{i}",
                "t",
                rng.choice("ab"),
                metric,
                value,
                at,
                f"k{rng.randrange(n)}",
                {"user": f"u{rng.randrange(9)}"},
            )
        )
    return out


def direct(records: list[UsageRecord], sub: str, metric: str, lo: int, hi: int) -> Any:
    return totals_of(
        r.point for r in records if r.subscription_id == sub and r.metric_code == metric and lo <= r.recorded_at_ms < hi
    )


def assert_matches(totals: Any, want: Any, query: UsageQuery) -> None:
    """``totals`` agree with ``want`` in everything the query's metric aggregates, and give the same
    quantity for every aggregation the metric could use."""
    metric = METRICS.get(query.metric_code, Metric(query.metric_code))
    assert (totals.event_count, totals.total, totals.maximum, totals.latest, totals.first) == (
        want.event_count,
        want.total,
        want.maximum,
        want.latest,
        want.first,
    ), query
    if metric.aggregation is Aggregation.UNIQUE_COUNT:
        assert totals.uniques == want.uniques, query
    if metric.aggregation is Aggregation.TIME_WEIGHTED_SUM:
        assert totals.tw_integral == want.tw_integral, query
    aggregations = {Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX, Aggregation.LATEST, metric.aggregation}
    for aggregation in aggregations:
        expected = quantity(aggregation, want, query.end_ms)
        assert quantity(aggregation, totals, query.end_ms) == expected, (aggregation, query)


def test_totals_of_any_interval_equal_a_direct_computation(store: UsageStore) -> None:
    records = fill(store, random_events(1))
    rng = random.Random(2)
    queries = []
    for _ in range(200):
        lo = BASE_MS + rng.randrange(-3_600_000, 3 * 86_400_000)
        hi = lo + rng.choice([0, 1, 899_999, 900_000, rng.randrange(1, 3 * 86_400_000)])
        queries.append(UsageQuery(rng.choice("abz"), rng.choice(sorted(METRICS)), lo, hi))
    got = store.totals(queries)
    assert len(got) == len(queries)
    for query, totals in zip(queries, got, strict=True):
        assert_matches(
            totals, direct(records, query.subscription_id, query.metric_code, query.start_ms, query.end_ms), query
        )


def test_summed_is_the_event_count_total_and_maximum_of_totals(store: UsageStore) -> None:
    fill(store, random_events(6, 300))
    rng = random.Random(7)
    queries = []
    for _ in range(60):
        lo = BASE_MS + rng.randrange(-3_600_000, 2 * 86_400_000)
        hi = lo + rng.randrange(0, 86_400_000)
        queries.append(UsageQuery(rng.choice("abz"), rng.choice(sorted(METRICS)), lo, hi))
    summed = store.summed(queries)
    assert [str(astuple(s)) for s in summed] == [str(astuple(summed_of(t))) for t in store.totals(queries)]
    assert any(s.event_count for s in summed)
    assert store.summed([]) == []


def test_both_adapters_answer_identically(chdb_client: Any, clickhouse_db: str) -> None:
    events = random_events(3, 400)
    memory, clickhouse = MemoryUsageStore(), ClickHouseUsageStore(chdb_client, clickhouse_db)
    fill(memory, events)
    fill(clickhouse, events, batch_size=50)
    queries = [
        UsageQuery(s, m, BASE_MS + k * 3_333_333, BASE_MS + k * 7_777_777 + 1)
        for s in "ab"
        for m in METRICS
        for k in range(1, 30)
    ]
    assert memory.totals(queries) == clickhouse.totals(queries)
    for sub in "ab":
        for metric in METRICS:
            for granularity in Granularity:
                assert memory.windows(sub, metric, granularity, 0, 2 * BASE_MS) == clickhouse.windows(
                    sub, metric, granularity, 0, 2 * BASE_MS
                )


def test_rewriting_the_same_batch_changes_nothing(store: UsageStore) -> None:
    events = random_events(4, 100)
    records = fill(store, events)
    rows = store.windows("a", "calls", Granularity.QUARTER, 0, 2 * BASE_MS)
    days = store.windows("a", "calls", Granularity.DAY, 0, 2 * BASE_MS)
    query = [UsageQuery("a", "calls", BASE_MS, BASE_MS + 3 * 86_400_000)]
    before = store.totals(query)
    store.write(records, rows)  # a replay of the very same batch
    store.write(list(reversed(records))[:10], rows[:1])  # and a replay cut differently
    assert store.totals(query) == before
    assert store.windows("a", "calls", Granularity.QUARTER, 0, 2 * BASE_MS) == rows
    assert store.windows("a", "calls", Granularity.DAY, 0, 2 * BASE_MS) == days
    assert sum(day.version for day in days) == sum(row.version for row in rows) > 0


def bucket(start_ms: int, version: int, total: Decimal, metric: str = "calls") -> WindowRow:
    """A written row: a 15-minute bucket of ``version`` events with the roll-ups it belongs to (UTC)."""
    spans = rollup_windows(start_ms, "UTC")
    totals = totals_of(Point(start_ms + i, f"k{i}", total / version) for i in range(version))
    return WindowRow(
        WindowKey("a", metric, Granularity.QUARTER, start_ms), "t", spans[0][2], version, totals, spans[1:]
    )


def test_a_rollup_or_a_bucket_without_its_rollups_is_refused_and_nothing_is_stored(store: UsageStore) -> None:
    good = bucket(BASE_MS, 1, Decimal(1))
    hour = good._replace(key=good.key._replace(granularity=Granularity.HOUR), rollups=())
    for bad in (hour, good._replace(rollups=())):
        with pytest.raises(ValueError, match="only 15-minute buckets"):
            store.write([], [good, bad])
    assert store.windows("a", "calls", Granularity.QUARTER, 0, 2 * BASE_MS) == []


def test_an_older_version_never_replaces_a_newer_one(store: UsageStore) -> None:
    newer = bucket(BASE_MS, 2, Decimal("3.5"))
    older = bucket(BASE_MS, 1, Decimal("1"))
    store.write([], [newer])
    store.write([], [older])
    assert store.windows("a", "calls", Granularity.QUARTER, BASE_MS, BASE_MS + 1) == [newer]


def test_empty_and_unknown_intervals_are_zero(store: UsageStore) -> None:
    fill(store, random_events(5, 50))
    empty = store.totals([UsageQuery("a", "calls", BASE_MS, BASE_MS), UsageQuery("nobody", "calls", 0, 2 * BASE_MS)])
    assert [t.event_count for t in empty] == [0, 0]
    assert [t.total for t in empty] == [0, 0]


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 12)), min_size=1, max_size=40),
    st.integers(0, 20_000),
    st.integers(0, 20_000),
)
def test_twelve_fractional_digits_and_large_values_stay_exact(
    chdb_client: Any, rows: list[tuple[int, int]], lo: int, hi: int
) -> None:
    from uuid import uuid4

    from streams.clickhouse.client import ensure_schema

    database = f"t_{uuid4().hex[:12]}"
    ensure_schema(chdb_client, database)
    store = ClickHouseUsageStore(chdb_client, database)
    events = [
        UsageEvent(
            f"e{i}", "t", "a", "calls", float(Decimal(v) / 10**d) + 10**13, BASE_MS + minute * 60_000, f"k{i}", {}
        )
        for i, (minute, d) in enumerate(rows)
        for v in (rows[i][0] * 7 + 1,)
    ]
    records = fill(store, events)
    lo_ms, hi_ms = BASE_MS + min(lo, hi) * 60_000 + 17, BASE_MS + max(lo, hi) * 60_000 + 17
    [got] = store.totals([UsageQuery("a", "calls", lo_ms, hi_ms)])
    assert got.total == direct(records, "a", "calls", lo_ms, hi_ms).total


class CountingClient:
    """The session's ClickHouse client, counting the SELECTs sent through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.queries = 0

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self.queries += 1
        return self.client.query(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_thousands_of_queries_are_answered_in_order_by_a_handful_of_sql_queries(
    chdb_client: Any, clickhouse_db: str
) -> None:
    counting = CountingClient(chdb_client)
    memory, clickhouse = MemoryUsageStore(), ClickHouseUsageStore(counting, clickhouse_db)
    events = random_events(6, 300)
    fill(memory, events)
    fill(clickhouse, events)
    rng = random.Random(7)
    queries = []
    for n in range(6000):
        lo = BASE_MS + rng.randrange(-3_600_000, 3 * 86_400_000)
        hi = lo + rng.randrange(0, 2 * 86_400_000)
        # long names too: literals of 6,000 spans would exceed ClickHouse's 256 KiB max_query_size
        queries.append(
            UsageQuery(rng.choice(["a", "b", f"nobody-{n:05d}-" + "x" * 40]), rng.choice(sorted(METRICS)), lo, hi)
        )
    counting.queries = 0
    got = clickhouse.totals(queries)
    assert counting.queries <= 2
    assert got == memory.totals(queries)
    assert clickhouse.totals(queries[::-1]) == got[::-1]


class RecordingStore(MemoryUsageStore):
    """A memory store that also keeps every batch written to it, to replay them elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[list[UsageRecord], list[WindowRow]]] = []

    def write(self, records: Sequence[UsageRecord], windows: Sequence[WindowRow]) -> None:
        self.batches.append((list(records), list(windows)))
        super().write(records, windows)


def test_a_replay_cut_into_other_batches_and_orders_counts_each_event_once(store: UsageStore) -> None:
    recording = RecordingStore()
    records = fill(recording, random_events(8, 300), batch_size=11)
    assert len(recording.batches) > 10  # each batch holds newer versions of windows written before
    for batch in recording.batches:
        store.write(*batch)
    all_records = [r for batch, _ in recording.batches for r in batch]
    all_rows = [w for _, rows in recording.batches for w in rows]
    rng = random.Random(9)
    for cut in (13, 1, 97):  # the same history again, cut differently and with old versions last
        rng.shuffle(all_records)
        for start in range(0, len(all_records), cut):
            store.write(all_records[start : start + cut], all_rows[::-1][start : start + cut])
    store.write(all_records, all_rows[::-1])
    queries = [
        UsageQuery(s, m, BASE_MS + k * 1_234_567, BASE_MS + k * 4_567_891 + 7)
        for s in "ab"
        for m in sorted(METRICS)
        for k in range(1, 60)
    ]
    assert store.totals(queries) == recording.totals(queries)
    for query, totals in zip(queries, store.totals(queries), strict=True):
        assert_matches(
            totals, direct(records, query.subscription_id, query.metric_code, query.start_ms, query.end_ms), query
        )
    for granularity in Granularity:
        assert store.windows("a", "gb", granularity, 0, 2 * BASE_MS) == recording.windows(
            "a", "gb", granularity, 0, 2 * BASE_MS
        )


def test_windows_are_the_newest_versions_in_time_order_within_the_half_open_range(store: UsageStore) -> None:
    starts = [BASE_MS + q * 900_000 for q in range(40)]  # ten hours of buckets

    def row(start_ms: int, version: int) -> WindowRow:
        return bucket(start_ms, version, Decimal(version) / 8)

    rng = random.Random(10)
    writes = [row(start, version) for start in starts for version in (1, 5, 3)]
    rng.shuffle(writes)
    for start in range(0, len(writes), 4):
        store.write([], writes[start : start + 4])
    assert store.windows("a", "calls", Granularity.QUARTER, starts[2], starts[7]) == [row(s, 5) for s in starts[2:7]]
    assert store.windows("a", "calls", Granularity.QUARTER, starts[2], starts[2]) == []
    hours = store.windows("a", "calls", Granularity.HOUR, starts[4], starts[24])  # hours starting in the range
    assert [(h.key.start_ms, h.end_ms, h.version, h.totals.total) for h in hours] == [
        (start, start + 3_600_000, 20, Decimal("2.5")) for start in starts[4:24:4]
    ]
    assert [d.version for d in store.windows("a", "calls", Granularity.DAY, 0, 2 * BASE_MS)] == [200]
    assert store.windows("a", "gb", Granularity.HOUR, 0, 2 * BASE_MS) == []


EXACT = Context(prec=100)
BIG_VALUES = [
    Decimal("0.000000000001"),
    Decimal("0.123456789012"),
    Decimal("12345678901234.123456789012"),
    Decimal("99999999999999999999999999.999999999999") / 10,  # 25 integer digits
    Decimal("98765432109876543210987.654321098765"),
    Decimal("3"),
]


def big_records(seed: int, *, with_user: bool = False) -> list[UsageRecord]:
    """60 records of each metric of subscription a over a day, their values drawn from BIG_VALUES."""
    rng = random.Random(seed)
    return [
        UsageRecord(
            f"e{i}-{metric}",
            "t",
            "a",
            metric,
            rng.choice(BIG_VALUES),
            BASE_MS + rng.randrange(86_400_000),
            f"k{i}-{metric}",
            {"user": f"u{i % 5}"} if with_user else {},
            f"u{i % 5}" if metric == "users" else None,
        )
        for i in range(60)
        for metric in sorted(METRICS)
    ]


def rows_of(records: list[UsageRecord]) -> list[WindowRow]:
    """Window rows of ``records`` as the operators build them."""
    state: dict[WindowKey, WindowAccumulator] = {}
    spans = {}
    for record in records:
        key, spans[key] = observe(state, record.subscription_id, METRICS[record.metric_code], "UTC", record.point)
    return [
        WindowRow(key, "t", spans[key][0][2], acc.version, acc.totals(), spans[key][1:]) for key, acc in state.items()
    ]


@pytest.mark.parametrize("store", ["memory", "clickhouse"], indirect=True)
def test_twelve_fractional_digits_and_values_up_to_1e25_are_exact_in_every_aggregation(store: UsageStore) -> None:
    records = big_records(11)
    rows = rows_of(records)  # in the thread's default 28-digit context: the operators must not use it
    store.write(records, rows)
    queries = [
        UsageQuery("a", m, BASE_MS + k * 1_111_111 + 3, BASE_MS + k * 3_333_333 + 5)
        for m in sorted(METRICS)
        for k in range(1, 25)
    ]
    for query, totals in zip(queries, store.totals(queries), strict=True):
        with localcontext(EXACT):
            want = direct(records, query.subscription_id, query.metric_code, query.start_ms, query.end_ms)
            assert_matches(totals, want, query)
    assert store.windows("a", "gb", Granularity.QUARTER, 0, 2 * BASE_MS) == sorted(
        (r for r in rows if r.key.metric_code == "gb"), key=lambda r: r.key.start_ms
    )
    for metric in sorted(METRICS):  # the day roll-up folded by the store, against a direct computation
        [day] = store.windows("a", metric, Granularity.DAY, 0, 2 * BASE_MS)
        with localcontext(EXACT):
            want = direct(records, "a", metric, day.key.start_ms, day.end_ms)
        assert_matches(day.totals, want, UsageQuery("a", metric, day.key.start_ms, day.end_ms))
        assert day.version == want.event_count == 60


def test_a_window_table_is_stored_as_its_rows_would_be_with_every_aggregation_exact(store: UsageStore) -> None:
    """What the sink does with a usage.windows batch: the Arrow columns, inserted as they are,
    read back as the same rows as ``write`` of those rows stores, with older versions (in the
    table, before or after the newest, and stored already) changing nothing."""
    records = big_records(12)
    newest = rows_of(records)
    older = rows_of(records[: len(records) // 2])  # the same buckets at earlier versions
    store.write(records, [])
    store.write_window_table(window_table(older[:5]))
    store.write_window_table(window_table([*older[5:], *newest, *older]))
    store.write_window_table(window_table(older))  # a late redelivery of an older chunk
    reference = MemoryUsageStore()
    reference.write(records, newest)
    for metric in sorted(METRICS):
        for granularity in Granularity:
            assert store.windows("a", metric, granularity, 0, 2 * BASE_MS) == reference.windows(
                "a", metric, granularity, 0, 2 * BASE_MS
            )
    queries = [
        UsageQuery("a", m, BASE_MS + k * 1_111_111 + 3, BASE_MS + k * 3_333_333 + 5)
        for m in METRICS
        for k in range(1, 9)
    ]
    assert store.totals(queries) == reference.totals(queries)
    store.write_window_table(window_table([]))  # an empty table is no write
    assert store.totals(queries) == reference.totals(queries)


def test_an_event_table_is_stored_as_its_records_would_be_once_per_identity(store: UsageStore) -> None:
    """What the sink does with a usage.accepted batch: the Arrow columns, inserted as they are, give
    the totals ``write`` of those records gives (edge spans read the raw events), with records of
    either shape stored before, and replays of a batch, changing nothing."""
    records = big_records(13, with_user=True)
    rows = rows_of(records)
    store.write(records[:40], rows)  # an old worker's per-record messages, some replayed in a batch below
    store.write_event_table(event_table(records[20:100]))
    store.write_event_table(event_table(records[20:]))
    store.write_event_table(event_table(records[20:]))  # a redelivered batch
    store.write_event_table(event_table([]))  # an empty table is no write
    reference = MemoryUsageStore()
    reference.write(records, rows)
    queries = [
        UsageQuery("a", m, BASE_MS + k * 1_111_111 + 3, BASE_MS + k * 3_333_333 + 5)
        for m in sorted(METRICS)
        for k in range(1, 25)
    ]
    assert store.totals(queries) == reference.totals(queries)
    for query, totals in zip(queries, store.totals(queries), strict=True):
        with localcontext(EXACT):
            want = direct(records, query.subscription_id, query.metric_code, query.start_ms, query.end_ms)
            assert_matches(totals, want, query)


def test_an_event_table_with_a_bad_column_is_refused_and_nothing_is_stored(store: UsageStore) -> None:
    record = UsageRecord("e1", "t", "a", "calls", Decimal("2.5"), BASE_MS + 1, "k1", {}, None)
    table = event_table([record])
    with pytest.raises(ValueError, match=r"columns .* are not usage_events'"):
        store.write_event_table(table.drop_columns(["unique_value"]))
    with pytest.raises(ValueError, match="column value is string"):
        store.write_event_table(table.set_column(5, "value", table.column("value").cast(pa.string())))
    with pytest.raises(ValueError, match="column idempotency_key has nulls"):
        store.write_event_table(table.set_column(3, "idempotency_key", pa.nulls(1, pa.string())))
    query = UsageQuery("a", "calls", BASE_MS, BASE_MS + 2)  # an edge span: read from the raw events
    assert store.totals([query]) == MemoryUsageStore().totals([query])


def test_a_window_table_with_a_rollup_or_a_bad_column_is_refused_and_nothing_is_stored(store: UsageStore) -> None:
    good = bucket(BASE_MS, 1, Decimal(1))
    hour = good._replace(key=good.key._replace(granularity=Granularity.HOUR))
    with pytest.raises(ValueError, match="granularity: only 15-minute buckets"):
        store.write_window_table(window_table([good, hour]))
    table = window_table([good])
    with pytest.raises(ValueError, match=r"columns .* are not usage_windows'"):
        store.write_window_table(window_table([good], [1]))  # produced_at still on it
    with pytest.raises(ValueError, match="column total is decimal256"):
        store.write_window_table(table.set_column(8, "total", table.column("total").cast(pa.decimal256(76, 12))))
    no_day = table.set_column(22, "day_end", pa.nulls(1, table.schema.field("day_end").type))
    with pytest.raises(ValueError, match="column day_end: every bucket must carry its hour, day and month"):
        store.write_window_table(no_day)
    assert store.windows("a", "calls", Granularity.QUARTER, 0, 2 * BASE_MS) == []
