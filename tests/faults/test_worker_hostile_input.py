"""Nothing a producer sends can make the usage worker lose counts, amplify dead letters or stop, on
the real broker (issue 10, points 3 and 4):

* a message of more events than a worker can position (65,536) is dead-lettered whole, naming the
  limit, and the message after it is counted in full (before: 65,551 accepted, windows of 65,546);
* 10,000 NaN events in one message make 10,000 small letters, each carrying its own event, not
  10,000 copies of the whole message (before: 4.3 GB of letters);
* an undecodable message of almost 1 MB becomes a bounded letter marked truncated, and the worker
  goes on (before: a letter over the producer's limit, an exception, a restart loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas import avro_codec
from streams.ingest.partitioning import partition_of
from streams.kafka import messages
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS, USAGE_WINDOWS
from streams.operators.records import UsageEvent
from streams.operators.windows import POSITIONS_PER_OFFSET
from streams.ports import WindowRow
from tests.faults.pipeline_harness import (
    PARTITIONS,
    PIPELINE,
    ROOT,
    accepted_records,
    catalog_file,
    fresh_topics,
    read_all,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

AT = 1_767_225_600_000 + 3_600_000  # 2026-01-01T01:00Z


def event(n: int, sub: str = "s1", value: float = 1.0) -> dict[str, object]:
    return messages.usage_event_avro(UsageEvent(f"e{n}", "t1", sub, "api_calls", value, AT + n, f"k{n}", {}))


def batch(events: list[dict[str, object]]) -> bytes:
    return avro_codec.encode("usage_event_batch.v1", {"events": events})


def wait_for(
    bootstrap: str, topic: str, count: int, timeout: float = 300, read: Callable[[str, str], list[Any]] = read_all
) -> list[Any]:
    """At least ``count`` of what ``read`` finds in ``topic`` (its messages, unless told)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read(bootstrap, topic)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{topic}: {len(found)} records, expected {count}"
        time.sleep(2)


def test_hostile_messages_neither_lose_counts_nor_stop_the_worker(kafka_broker, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    bootstrap = kafka_broker.bootstrap
    prefix = f"hostile-{uuid.uuid4().hex[:8]}."
    fresh_topics(AdminClient({"bootstrap.servers": bootstrap}), [prefix + t for t in PIPELINE])
    catalog = catalog_file(tmp_path / "catalog.yaml", 6)
    partition = partition_of("s1", PARTITIONS)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "compression.type": "lz4", "message.max.bytes": 20_000_000, "linger.ms": 50}
    )
    topic = prefix + USAGE_EVENTS
    oversized = POSITIONS_PER_OFFSET + 10
    producer.produce(topic, batch([event(n) for n in range(oversized)]), b"s1", partition=partition)
    producer.produce(topic, batch([event(100_000 + n) for n in range(5)]), b"s1", partition=partition)
    nans = batch([event(200_000 + n, value=float("nan")) for n in range(10_000)])
    producer.produce(topic, nans, b"s1", partition=partition)
    junk = b"\x00\x00\x00\x00\x65" + bytes(range(256)) * 3905  # 999,685 bytes that decode as nothing
    producer.produce(topic, junk, b"s1", partition=partition)
    producer.produce(topic, avro_codec.encode("usage_event.v2", event(300_000)), b"s1", partition=partition)
    assert producer.flush(60) == 0

    log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 - owned by the child
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "billing.cli", "worker", "--catalog", str(catalog)),
            *("--partitions", str(PARTITIONS), "--topic-prefix", prefix, "--store", "memory", "--processes", "1"),
            *("--data-dir", str(tmp_path / "worker"), "--retention-days", "3650", "--log-level", "info"),
        ],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        stdout=log,
        stderr=log,
    )
    request.addfinalizer(worker.kill)

    accepted = wait_for(bootstrap, prefix + USAGE_ACCEPTED, 6, read=accepted_records)
    letters = wait_for(bootstrap, prefix + USAGE_DLQ, 1 + 10_000 + 1)
    assert worker.poll() is None, "the worker stopped"
    time.sleep(3)
    assert len(accepted_records(bootstrap, prefix + USAGE_ACCEPTED)) == 6  # the 5-event message and the last event

    decoded = [messages.read_dead_letter(m.value()) for m in letters]  # type: ignore[attr-defined]
    reasons = [letter["reason"] for letter in decoded]
    assert reasons.count("batch_too_large") == 1
    too_large = next(letter for letter in decoded if letter["reason"] == "batch_too_large")
    assert str(POSITIONS_PER_OFFSET) in too_large["detail"] and str(oversized) in too_large["detail"]
    assert too_large["original_truncated"] and too_large["original_size"] > len(too_large["original"])
    assert reasons.count("invalid_value") == 10_000
    nan_letters = [letter for letter in decoded if letter["reason"] == "invalid_value"]
    assert sorted(letter["event_index"] for letter in nan_letters) == list(range(10_000))
    assert all(messages.read_usage(letter["original"])[0].idempotency_key == f"k{200_000 + letter['event_index']}"
               for letter in nan_letters)  # fmt: skip
    total = sum(len(m.value()) for m in letters)  # type: ignore[attr-defined]
    assert total < 5_000_000, f"dead letters of {total} bytes: amplified"
    undecodable = next(letter for letter in decoded if letter["reason"] == "undecodable")
    assert undecodable["original_truncated"] and undecodable["original_size"] == len(junk)
    assert undecodable["original"] == junk[: len(undecodable["original"])]

    # the buckets of s1 count the six accepted events, none of the oversized batch, all in one month
    newest: dict[tuple[str, int], WindowRow] = {}
    for message in read_all(bootstrap, prefix + USAGE_WINDOWS):
        for row in messages.read_windows(message.value()):
            key = (row.key.metric_code, row.key.start_ms)
            if key not in newest or row.version > newest[key].version:
                newest[key] = row
    assert {str(row.key.granularity) for row in newest.values()} == {"15m"}
    assert sum(row.totals.event_count for row in newest.values()) == 6
    assert len({row.rollups[2] for row in newest.values()}) == 1
    assert {record.subscription_id for record in accepted} == {"s1"}
