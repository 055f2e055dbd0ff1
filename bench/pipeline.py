"""Benchmark: the in-process pipeline (validate → dedup → windows → chDB) on a million events.

Prints events/s end to end, the ratio to a plain chDB insert of the same raw rows measured in the
same run (the floor any pipeline writing to chDB pays), the split of the time by stage, and peak
memory (max RSS). Usage: python bench/pipeline.py [--events N] [--subscriptions N]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from billing.streaming import tune_gc
from rating.catalog import Aggregation, Metric, MetricType
from rating.numbers import decimal_from_double
from streams.clickhouse.client import ensure_schema, open_client
from streams.clickhouse.columns import AMOUNT, INSTANT, text_map
from streams.clickhouse.store import ClickHouseUsageStore
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MONTH_MS = 30 * 86_400_000


def workload(events: int, subscriptions: int, seed: int = 1) -> list[UsageEvent]:
    """Events over a month with 5% exact duplicates and 10% out of order."""
    rng = random.Random(seed)
    out: list[UsageEvent] = []
    for n in range(events):
        sub = f"sub_{rng.randrange(subscriptions):05d}"
        metric = ("api_calls", "storage_gb", "active_users")[n % 3]
        value = float(rng.randrange(1, 500)) if metric != "storage_gb" else round(rng.uniform(1, 100), 3)
        meta = {"user_id": f"u{rng.randrange(50)}"} if metric == "active_users" else {}
        at = BASE_MS + rng.randrange(MONTH_MS)
        out.append(UsageEvent(f"e{n}", "bench", sub, metric, value, at, f"k{n}", meta))
        if rng.random() < 0.05:
            out.append(out[-1])
    # 10% out of order: swap random pairs
    for _ in range(len(out) // 20):
        i, j = rng.randrange(len(out)), rng.randrange(len(out))
        out[i], out[j] = out[j], out[i]
    return out


def plain_insert(client: Client, events: list[UsageEvent]) -> float:
    """Baseline: the same raw rows (the usage_events columns) inserted into a plain MergeTree
    table in chunks of 100,000, as Arrow columns like the store's own writes: no validation, no
    dedup, no windows."""
    client.command(
        "CREATE TABLE IF NOT EXISTS baseline.raw (tenant_id LowCardinality(String), subscription_id String, "
        "metric_code LowCardinality(String), idempotency_key String, event_id String, value Decimal128(12), "
        "recorded_at DateTime64(3, 'UTC'), metadata Map(String, String), unique_value Nullable(String)) "
        "ENGINE = MergeTree ORDER BY (subscription_id, metric_code, recorded_at)"
    )
    started = time.perf_counter()
    for chunk in range(0, len(events), 100_000):
        part = events[chunk : chunk + 100_000]
        columns = {
            "tenant_id": pa.array([e.tenant_id for e in part], pa.string()),
            "subscription_id": pa.array([e.subscription_id for e in part], pa.string()),
            "metric_code": pa.array([e.metric_code for e in part], pa.string()),
            "idempotency_key": pa.array([e.idempotency_key for e in part], pa.string()),
            "event_id": pa.array([e.id for e in part], pa.string()),
            "value": pa.array([decimal_from_double(e.value) for e in part], AMOUNT),
            "recorded_at": pa.array([e.recorded_at_ms for e in part], INSTANT),
            "metadata": text_map(dict(e.metadata) for e in part),
            "unique_value": pa.array([e.metadata.get("user_id") for e in part], pa.string()),
        }
        client.insert_arrow("baseline.raw", pa.table(columns))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=3000)
    args = parser.parse_args()
    events = workload(args.events, args.subscriptions)
    metrics = {
        "api_calls": Metric("api_calls"),
        "storage_gb": Metric("storage_gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM),
        "active_users": Metric("active_users", aggregation=Aggregation.UNIQUE_COUNT, field="user_id"),
    }
    subs = {f"sub_{i:05d}": SubscriptionRef(f"sub_{i:05d}", "bench", "Asia/Jakarta") for i in range(args.subscriptions)}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        client = open_client(None, str(Path(tmp) / "chdb"))
        ensure_schema(client, "billing")
        client.command("CREATE DATABASE IF NOT EXISTS baseline")
        baseline_s = plain_insert(client, events)

        store = ClickHouseUsageStore(client, "billing")
        timed = TimedStore(store)
        pipeline = InProcessPipeline(
            Catalog(metrics.get, subs.get),
            timed,
            MemoryDeadLetters(),
            lambda: BASE_MS + 2 * MONTH_MS,
            tenant_of=lambda _: "bench",
            batch_size=200_000,
        )
        tune_gc()  # as billing demo, simulate and the stream processes do
        started = time.perf_counter()
        stats = pipeline.run(events)
        total_s = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = len(events) / total_s
    baseline_rate = len(events) / baseline_s
    print(f"events: {len(events):,} ({stats.accepted:,} accepted, {stats.duplicates:,} duplicates)")
    print(f"pipeline end to end: {rate:,.0f} events/s ({total_s:.2f} s)")
    print(f"  of which operators (validate, dedup, windows): {total_s - timed.seconds:.2f} s")
    print(f"  of which chDB writes (events + windows):     {timed.seconds:.2f} s")
    print(f"baseline plain chDB insert of the same rows: {baseline_rate:,.0f} events/s ({baseline_s:.2f} s)")
    print(f"ratio pipeline / plain insert: {rate / baseline_rate:.3f}")
    print(f"peak memory (max RSS): {peak_mib:,.0f} MiB")


class TimedStore:
    """Wraps a store to measure the time spent writing."""

    def __init__(self, store: ClickHouseUsageStore) -> None:
        self.store = store
        self.seconds = 0.0

    def write(self, records, windows):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        self.store.write(records, windows)
        self.seconds += time.perf_counter() - started

    def totals(self, queries):  # type: ignore[no-untyped-def]
        return self.store.totals(queries)

    def summed(self, queries):  # type: ignore[no-untyped-def]
        return self.store.summed(queries)

    def windows(self, *args):  # type: ignore[no-untyped-def]
        return self.store.windows(*args)


if __name__ == "__main__":
    main()
