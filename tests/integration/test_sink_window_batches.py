"""``billing sink`` on a ``usage.windows`` and a ``usage.accepted`` that hold both message shapes, as
during an upgrade: the old workers' ``window_total.v3`` rows and ``usage_record.v1`` records (one
per message) and the new ``window_batch.v1`` and ``usage_record_batch.v1`` Arrow batches. Real
broker, real chDB and the memory store: every bucket ends at its newest version whatever order the
versions arrive in, every accepted record is stored once whatever shapes carried it, ``on_written``
hears every record and subscription, and the latency metric counts every row."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from rating.aggregations import Point, totals_of
from streams.clickhouse.store import ClickHouseUsageStore
from streams.kafka import messages
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_WINDOWS, ensure_topics
from streams.memory import MemoryUsageStore
from streams.operators.intervals import UsageQuery
from streams.operators.records import UsageRecord
from streams.operators.windows import Granularity, WindowKey, rollup_windows
from streams.ports import UsageStore, WindowRow
from streams.store.sink import SinkSettings, UsageSink

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000
NOW_MS = BASE_MS + 86_400_000


def bucket(subscription: str, quarter: int, version: int) -> WindowRow:
    start = BASE_MS + quarter * 900_000
    spans = rollup_windows(start, "Asia/Kathmandu")
    points = (Point(start + i, f"k{i}", Decimal("0.1") * (i + 1), f"u{i % 3}") for i in range(version))
    return WindowRow(
        WindowKey(subscription, "calls", Granularity.QUARTER, start),
        "t",
        spans[0][2],
        version,
        totals_of(points),
        spans[1:],
    )


@pytest.fixture(params=["memory", "clickhouse"])
def store(request: pytest.FixtureRequest) -> UsageStore:
    if request.param == "memory":
        return MemoryUsageStore()
    return ClickHouseUsageStore(request.getfixturevalue("chdb_client"), request.getfixturevalue("clickhouse_db"))


def test_old_rows_and_new_batches_on_one_topic_end_at_the_newest_version_of_each_bucket(
    kafka_broker: Any, store: UsageStore
) -> None:
    prefix = f"sink-{uuid.uuid4().hex[:8]}."
    windows_topic, accepted_topic = prefix + USAGE_WINDOWS, prefix + USAGE_ACCEPTED
    ensure_topics(kafka_broker.bootstrap, 1, topics=[windows_topic, accepted_topic])
    a_new, a_old = bucket("a", 0, 4), bucket("a", 0, 2)
    b = bucket("b", 1, 3)
    c_new, c_old = bucket("c", 2, 5), bucket("c", 2, 1)
    d_new, d_old = bucket("d", 3, 2), bucket("d", 3, 1)
    record = UsageRecord("e1", "t", "e", "calls", Decimal("1.5"), BASE_MS, "k1", {}, None)
    batched = [
        UsageRecord(f"e{n}", "t", "e", "calls", Decimal(n) / 8, BASE_MS + n, f"k{n}", {"n": str(n)}, None)
        for n in range(2, 6)
    ]
    accepted = [
        messages.write_record(record),  # an old worker's record
        *messages.write_record_batches(batched[:3]),
        *messages.write_record_batches([record, *batched[2:]]),  # a new worker's replay of both shapes' records
    ]
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    sent = [
        (messages.write_window(a_new), BASE_MS + 1),  # an old worker's newest row of a, first
        *messages.write_window_batches([a_old, b, c_new, d_old], [BASE_MS + 2, BASE_MS + 3, None, BASE_MS + 4]),
        *messages.write_window_batches([d_new], [BASE_MS + 5]),
        (messages.write_window(c_old), BASE_MS + 6),  # an older row of c after its newest
    ]
    for value, stamp in sent:
        producer.produce(windows_topic, value=value, timestamp=stamp or 0)
    for value in accepted:
        producer.produce(accepted_topic, value=value)
    assert producer.flush(30) == 0

    heard: list[tuple[list[UsageRecord], set[str]]] = []
    sink = UsageSink(
        SinkSettings(kafka_broker.bootstrap, topic_prefix=prefix, batch_max=2),  # several sink batches
        store,
        on_written=lambda records, subscriptions: heard.append((records, subscriptions)),
        now_ms=lambda: NOW_MS,
    )
    try:
        handled, deadline = 0, time.monotonic() + 60
        while handled < len(sent) + len(accepted):
            handled += sink.run_once()
            assert time.monotonic() < deadline, f"the sink handled {handled} of {len(sent) + len(accepted)} messages"
    finally:
        sink.close()

    for row in (a_new, b, c_new, d_new):
        key = row.key
        assert store.windows(key.subscription_id, "calls", Granularity.QUARTER, key.start_ms, key.start_ms + 1) == [row]
    hour = store.windows("a", "calls", Granularity.HOUR, 0, NOW_MS)
    assert [h.totals.total for h in hour] == [a_new.totals.total]

    def by_id(r: UsageRecord) -> str:
        return r.event_id

    every = [record, *batched[:3], record, *batched[2:]]
    assert sorted((r for records, _ in heard for r in records), key=by_id) == sorted(every, key=by_id)
    assert set().union(*(subscriptions for _, subscriptions in heard)) == {"a", "b", "c", "d"}  # of windows
    reference = MemoryUsageStore()
    reference.write([record, *batched], [])
    edge = UsageQuery("e", "calls", BASE_MS, BASE_MS + 100)  # within a bucket: read from the raw events
    [stored] = store.totals([edge])
    assert stored == reference.totals([edge])[0]
    assert stored.event_count == 5 and stored.total == Decimal("1.5") + sum(r.value for r in batched)
    latency = sink.metrics.event_to_queryable
    observed = latency.collect()[0]
    count = next(s.value for s in observed.samples if s.name.endswith("_count"))
    total = next(s.value for s in observed.samples if s.name.endswith("_sum"))
    # every row with a stamp once: 2 single rows, 4 + 1 batch rows of which one has none
    assert count == 6
    assert total == pytest.approx(sum((NOW_MS - stamp) / 1000 for stamp in range(BASE_MS + 1, BASE_MS + 7)))
