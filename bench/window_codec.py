"""Microbenchmark: the cost per window row of ``usage.windows`` on the wire, Avro rows vs Arrow batches.

The rows are the 15-minute buckets the operators make of the Kafka bench's workload
(``bench/kafka_pipeline.py``: 1,000 subscriptions, 3 metrics, events over 30 days, so about one
event per bucket). Each path is timed from the worker's ``WindowRow`` objects to the Arrow table
the store inserts, in CPU time of this process (best of ``--repeat``; the machine is shared):

* Avro (``window_total.v3``, before): the worker encodes each row; the sink decodes each row and
  builds the Arrow columns (``window_columns``) of the batch's rows.
* Arrow IPC (``window_batch.v1``): the worker builds the Arrow columns once and writes them as IPC
  messages of at most 2,000 rows; the sink reads each message's table as it is.

    python bench/window_codec.py [--events 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from rating.aggregations import Point
from rating.catalog import Aggregation, Metric, MetricType
from streams.clickhouse.columns import window_columns
from streams.generate import generate
from streams.kafka import messages
from streams.operators.windows import WindowAccumulator, WindowKey, WindowSpan, observe
from streams.ports import WindowRow

BASE_MS = 1_767_225_600_000
SUBSCRIPTIONS = [f"sub_{n:05d}" for n in range(1000)]
METRICS = {
    "api_calls": Metric("api_calls"),
    "storage_gb": Metric("storage_gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM),
    "active_users": Metric("active_users", aggregation=Aggregation.UNIQUE_COUNT, field="user"),
}


def bucket_rows(events: int) -> list[WindowRow]:
    """The buckets of ``events`` events of the Kafka bench's workload, as the worker writes them."""
    state: dict[WindowKey, WindowAccumulator] = {}
    spans: dict[WindowKey, tuple[WindowSpan, ...]] = {}
    for event in generate(events, SUBSCRIPTIONS, list(METRICS), start_ms=BASE_MS, seed=1):
        metric = METRICS[event.metric_code]
        unique = event.metadata.get("user") if metric.field else None
        point = Point(event.recorded_at_ms, event.idempotency_key, Decimal(repr(event.value)), unique)
        key, spans[key] = observe(state, event.subscription_id, metric, "Asia/Jakarta", point)
    return [
        WindowRow(key, "t1", spans[key][0][2], acc.version, acc.totals(), spans[key][1:]) for key, acc in state.items()
    ]


def cpu(step: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best CPU seconds of ``repeat`` runs of ``step``, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.process_time()
        result = step()
        best = min(best, time.process_time() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = bucket_rows(args.events)
    stamps: list[int | None] = [BASE_MS] * len(rows)
    n = len(rows)

    avro_encode, values = cpu(lambda: [messages.write_window(row) for row in rows], args.repeat)
    avro_decode, decoded = cpu(lambda: [messages.read_window(value) for value in values], args.repeat)
    avro_columns, _ = cpu(lambda: pa.table(window_columns(decoded)), args.repeat)
    ipc_encode, batches = cpu(lambda: messages.write_window_batches(rows, stamps), args.repeat)
    ipc_decode, tables = cpu(
        lambda: [messages.without_stamps(messages.read_window_batch(value)) for value, _ in batches], args.repeat
    )
    assert sum(t.num_rows for t in tables) == n
    assert [row for value, _ in batches for row in messages.read_windows(value)] == rows  # exact, both ways

    def per_row(seconds: float) -> str:
        return f"{seconds / n * 1e6:5.1f} µs"

    print(f"{n:,} bucket rows of {args.events:,} events; CPU per row, best of {args.repeat}:")
    print(
        f"  Avro window_total.v3: worker encode {per_row(avro_encode)}, sink decode {per_row(avro_decode)} "
        f"+ Arrow columns {per_row(avro_columns)}; in all {per_row(avro_encode + avro_decode + avro_columns)} "
        f"({sum(map(len, values)) / n:.0f} bytes per row)"
    )
    print(
        f"  Arrow IPC window_batch.v1: worker columns + IPC {per_row(ipc_encode)}, sink read {per_row(ipc_decode)}; "
        f"in all {per_row(ipc_encode + ipc_decode)} ({sum(len(v) for v, _ in batches) / n:.0f} bytes per row, "
        f"{len(batches)} messages)"
    )


if __name__ == "__main__":
    main()
