"""Microbenchmark: the cost per accepted record of ``usage.accepted`` on the wire, Avro records vs
Arrow batches (decision 0016).

The records are the Kafka bench's workload (``bench/kafka_pipeline.py``: 1,000 subscriptions, 3
metrics, a ``user`` in each event's metadata) as the operators accept them. Each path is timed from
the worker's ``UsageRecord`` objects to the Arrow table the store inserts, in CPU time of this
process (best of ``--repeat``; the machine is shared):

* Avro (``usage_record.v1``, before): the worker encodes each record; the sink decodes each record
  and builds the Arrow columns (``event_columns``) of the batch's records.
* Arrow IPC (``usage_record_batch.v1``): the worker builds the Arrow columns once and writes them
  as IPC messages of at most 2,000 rows; the sink reads each message's table as it is.

The last line is the Arrow path's CPU over the Avro path's, both measured in this run.

    python bench/record_codec.py [--events 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse

import pyarrow as pa
from window_codec import cpu  # bench/window_codec.py: the same CPU timer

from rating.numbers import decimal_from_double
from streams.clickhouse.columns import event_columns
from streams.generate import generate
from streams.kafka import messages
from streams.operators.records import UsageRecord

BASE_MS = 1_767_225_600_000
SUBSCRIPTIONS = [f"sub_{n:05d}" for n in range(1000)]
METRICS = ["api_calls", "storage_gb", "active_users"]


def accepted(events: int) -> list[UsageRecord]:
    """The records of ``events`` events of the Kafka bench's workload, as the worker accepts them."""
    return [
        UsageRecord(
            event.id,
            event.tenant_id,
            event.subscription_id,
            event.metric_code,
            decimal_from_double(event.value),
            event.recorded_at_ms,
            event.idempotency_key,
            dict(event.metadata),
            event.metadata.get("user") if event.metric_code == "active_users" else None,
        )
        for event in generate(events, SUBSCRIPTIONS, METRICS, start_ms=BASE_MS, seed=1)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = accepted(args.events)
    n = len(records)

    avro_encode, values = cpu(lambda: [messages.write_record(record) for record in records], args.repeat)
    avro_decode, decoded = cpu(lambda: [messages.read_record(value) for value in values], args.repeat)
    avro_columns, _ = cpu(lambda: pa.table(event_columns(decoded)), args.repeat)
    ipc_encode, batches = cpu(lambda: messages.write_record_batches(records), args.repeat)
    ipc_decode, tables = cpu(lambda: [messages.read_record_batch(value) for value in batches], args.repeat)
    assert sum(t.num_rows for t in tables) == n
    assert [r for value in batches for r in messages.read_records(value)] == records  # exact, both ways

    def per_record(seconds: float) -> str:
        return f"{seconds / n * 1e6:5.1f} µs"

    avro, ipc = avro_encode + avro_decode + avro_columns, ipc_encode + ipc_decode
    print(f"{n:,} accepted records; CPU per record, best of {args.repeat}:")
    print(
        f"  Avro usage_record.v1: worker encode {per_record(avro_encode)}, sink decode {per_record(avro_decode)} "
        f"+ Arrow columns {per_record(avro_columns)}; in all {per_record(avro)} "
        f"({sum(map(len, values)) / n:.0f} bytes per record)"
    )
    print(
        f"  Arrow IPC usage_record_batch.v1: worker columns + IPC {per_record(ipc_encode)}, "
        f"sink read {per_record(ipc_decode)}; in all {per_record(ipc)} "
        f"({sum(map(len, batches)) / n:.0f} bytes per record, {len(batches)} messages)"
    )
    sink = ipc_decode / (avro_decode + avro_columns)
    print(f"  ratio Arrow / Avro: worker {ipc_encode / avro_encode:.2f}, sink {sink:.2f}, in all {ipc / avro:.2f}")


if __name__ == "__main__":
    main()
