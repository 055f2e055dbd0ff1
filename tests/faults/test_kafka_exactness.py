"""Exact under faults, on the real broker: usage produced while the worker and the sink are killed
with SIGKILL and restarted, and while a second worker joins (a rebalance), ends up in ClickHouse
exactly as an independent oracle computes from the produced events; every invalid event is in
the dead-letter topic once with its reason, and nothing else is; no accepted record is emitted
twice; and the kills are shown to hit open transactions.

A second run keeps dedup state for a short retention so that the purge runs: a copy of an event
that arrives after its identity was purged is dead-lettered ``beyond_retention``, never counted
twice.

Sizes: FAULT_EVENTS (default 200_000) events over FAULT_SUBSCRIPTIONS subscriptions.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from billing.clock import FileClock
from schemas import avro_codec
from streams.aggregate.usage_state import state_topic
from streams.ingest.partitioning import PRODUCER_PARTITIONER, partition_of
from streams.kafka import messages
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS
from streams.operators.records import UsageEvent
from tests.faults.ground_truth import Produced
from tests.faults.pipeline_harness import (
    PARTITIONS,
    PIPELINE,
    Processes,
    accepted_records,
    catalog_file,
    caught_up,
    check_dead_letters,
    check_windows,
    end_offsets,
    fresh_topics,
    lagging,
    read_all,
    read_sink_store,
    workload,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

EVENTS = int(os.environ.get("FAULT_EVENTS", "200000"))
SUBSCRIPTIONS = int(os.environ.get("FAULT_SUBSCRIPTIONS", "300"))


def produce_all(
    bootstrap: str, topic: str, work_messages: list[tuple[int, bytes, bytes, list[Produced] | None]]
) -> dict[tuple[int, int], list[Produced] | None]:
    """Produce every message (spread over a few seconds); where each landed → its events."""
    delivered: dict[tuple[int, int], list[Produced] | None] = {}
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": PRODUCER_PARTITIONER,
        }
    )
    for n, (partition, value, key, group) in enumerate(work_messages):

        def on_delivery(err, msg, group=group):  # type: ignore[no-untyped-def]
            assert err is None, err
            delivered[(msg.partition(), msg.offset())] = group

        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 2000 == 0:
            producer.poll(0)
            time.sleep(0.02)  # spread production over the faults
    producer.flush(60)
    return delivered


def redelivered_after_kills(logs: Path) -> int:
    """Messages the workers skipped as below their committed marker (their log lines)."""
    pattern = re.compile(r"(\d+) redelivered messages skipped")
    return sum(
        int(match.group(1))
        for log in logs.glob("worker*.log")
        for match in pattern.finditer(log.read_text(errors="replace"))
    )


def wait_caught_up(bootstrap: str, procs: Processes, prefix: str, tmp_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not caught_up(bootstrap, prefix):
        assert procs.alive("worker") and procs.alive("sink"), "a process died on its own; see logs in " + str(tmp_path)
        assert time.monotonic() < deadline, "pipeline did not catch up: " + lagging(bootstrap, prefix)
        time.sleep(1)


def test_exact_usage_under_sigkills_and_a_rebalance(kafka_broker, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    bootstrap = kafka_broker.bootstrap
    prefix = f"exact-{uuid.uuid4().hex[:8]}."
    fresh_topics(AdminClient({"bootstrap.servers": bootstrap}), [prefix + t for t in PIPELINE])
    now_ms = int(time.time() * 1000)
    work = workload(seed=11, now_ms=now_ms, events=EVENTS, subscriptions=SUBSCRIPTIONS)
    procs = Processes(tmp_path, bootstrap, catalog_file(tmp_path / "catalog.yaml", SUBSCRIPTIONS), prefix)
    request.addfinalizer(procs.kill_all)
    procs.start("worker")
    procs.start("sink")

    result: dict[str, dict[tuple[int, int], list[Produced] | None]] = {}
    producing = threading.Thread(
        target=lambda: result.setdefault("delivered", produce_all(bootstrap, prefix + USAGE_EVENTS, work.messages))
    )
    producing.start()
    rng = random.Random(5)
    accepted_topic = prefix + USAGE_ACCEPTED
    for fault in ["worker", "sink", "worker", "rebalance", "sink", "worker", "sink"]:
        # each fault meets a pipeline at work: the worker has written something since its last
        # start (or has nothing left to do)
        seen = sum(end_offsets(bootstrap, accepted_topic).values())

        def progressed(seen: int = seen) -> bool:
            if sum(end_offsets(bootstrap, accepted_topic).values()) > seen:
                return True
            return not lagging(bootstrap, prefix).startswith(("worker", "Kafka"))

        wait_until(progressed, 180, "the worker to make progress before the next fault", interval=0.2)
        time.sleep(rng.uniform(0.2, 2))
        if fault == "rebalance":
            procs.start("worker2", store="memory")  # joins the group: partitions move, state restores
            time.sleep(rng.uniform(10, 15))
            procs.kill("worker2")  # and leaves abruptly: partitions move back
            continue
        procs.kill(fault)
        time.sleep(rng.uniform(0.5, 2))
        procs.start(fault)
    producing.join()
    delivered = result["delivered"]
    assert len(delivered) == len(work.messages)
    wait_caught_up(bootstrap, procs, prefix, tmp_path, 1800)
    procs.stop("worker")
    procs.stop("sink")  # releases the chDB directory

    summary = check_windows(work.produced, SUBSCRIPTIONS, now_ms, tmp_path / "sink" / "chdb")
    summary["dead_letters"] = check_dead_letters(bootstrap, prefix + USAGE_DLQ, delivered, SUBSCRIPTIONS, now_ms)
    accepted = len(accepted_records(bootstrap, prefix + USAGE_ACCEPTED))
    assert accepted == summary["distinct_accepted"], "an accepted record was emitted twice (or lost)"
    aborted = len(accepted_records(bootstrap, prefix + USAGE_ACCEPTED, "read_uncommitted")) - accepted
    redelivered = redelivered_after_kills(tmp_path)
    # a kill inside a transaction leaves aborted records; one after a commit, before Faust committed
    # the offsets, makes the next owner skip redelivered messages: either way work was in flight
    assert aborted + redelivered > 0, "no kill met work in flight"
    summary.update(
        events=len(work.produced),
        messages=len(work.messages),
        aborted_accepted_records=aborted,
        redelivered_messages=redelivered,
    )
    summary["restore_drill"] = restore_drill(bootstrap, prefix, tmp_path, work.produced, now_ms)
    print(json.dumps(summary))


def restore_drill(bootstrap: str, prefix: str, tmp_path: Path, produced: list[Produced], now_ms: int) -> dict[str, int]:
    """docs/operations.md § Backups and restore: the usage store is lost and rebuilt from
    usage.accepted (whose aborted records, left by the kills above, must not count). It holds
    the same distinct events and the same buckets, and ClickHouse folds the same hours, days and
    months from them, all equal to the oracle again. Billing reads nothing else, so the same
    invoices follow."""
    store = tmp_path / "sink" / "chdb"
    before = read_sink_store(store)
    shutil.rmtree(store)
    started = time.monotonic()
    command = [sys.executable, "-m", "billing.cli", "rebuild-usage", "--topic-prefix", prefix, "--bootstrap", bootstrap]
    command += ["--data-dir", str(tmp_path / "sink"), "--catalog", str(tmp_path / "catalog.yaml")]
    rebuilt = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    seconds = round(time.monotonic() - started)
    stats = json.loads(rebuilt.stdout.splitlines()[-1])
    after = read_sink_store(store)
    assert sorted(map(json.dumps, after[0])) == sorted(map(json.dumps, before[0])), "rebuilt windows differ"
    assert after[1] == before[1] == stats["records"], (after[1], before[1], stats)
    check_windows(produced, SUBSCRIPTIONS, now_ms, store)
    return {"records": stats["records"], "repeated": stats["repeated"], "rebuild_seconds": seconds}


def test_a_copy_after_the_purge_is_not_counted_twice(kafka_broker, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    """With a one-day retention and purges every batch, events of three days ago are purged from
    dedup state after the first run; their copies then arrive (one alone, one inside a batch) and
    are dead-lettered beyond_retention, while the windows keep the first counts."""
    bootstrap = kafka_broker.bootstrap
    prefix = f"purge-{uuid.uuid4().hex[:8]}."
    fresh_topics(AdminClient({"bootstrap.servers": bootstrap}), [prefix + t for t in PIPELINE])
    catalog = tmp_path / "catalog.yaml"
    catalog_file(catalog, 6)
    catalog.write_text(catalog.read_text().replace("2025-12-01T00:00:00Z", "2020-01-01T00:00:00Z"))
    procs = Processes(tmp_path, bootstrap, catalog, prefix, retention_days=1)
    clock = tmp_path / "clock"
    now = datetime.now(UTC)
    FileClock.set(clock, now)
    procs.worker_args = ["--clock-file", str(clock), "--purge-interval", "0"]
    request.addfinalizer(procs.kill_all)
    recent = int(now.timestamp() * 1000) - 3_600_000
    events = [
        UsageEvent(f"id-{n}", "t1", f"s{n % 6}", "api_calls", 1.0, recent - n * 60_000, f"k{n}", {}) for n in range(12)
    ]
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": PRODUCER_PARTITIONER})

    def send(batch: list[UsageEvent]) -> None:
        payload = [messages.usage_event_avro(e) for e in batch]
        value = (
            avro_codec.encode("usage_event.v2", payload[0])
            if len(payload) == 1
            else avro_codec.encode("usage_event_batch.v1", {"events": payload})
        )
        partition = partition_of(batch[0].subscription_id, PARTITIONS)
        producer.produce(prefix + USAGE_EVENTS, value=value, key=batch[0].subscription_id.encode(), partition=partition)
        producer.flush(30)

    for event in events:
        send([event])
    procs.start("worker")
    procs.start("sink")
    wait_caught_up(bootstrap, procs, prefix, tmp_path, 60)
    # the worker's clock moves two days on: the purge forgets them (and writes their tombstones)
    procs.stop("worker")
    FileClock.set(clock, now + timedelta(days=2))
    procs.start("worker", data_dir="worker-after")
    send([events[0]])
    same_partition = [
        e for e in events if partition_of(e.subscription_id, PARTITIONS) == partition_of("s1", PARTITIONS)
    ]
    send(same_partition)
    wait_caught_up(bootstrap, procs, prefix, tmp_path, 300)
    procs.stop("worker")
    procs.stop("sink")

    rows, distinct = read_sink_store(tmp_path / "sink" / "chdb")
    assert distinct == len(events)
    assert sum(row[4] for row in rows if row[2] == "15m") == len(events)
    letters = [messages.read_dead_letter(m.value()) for m in read_all(bootstrap, prefix + USAGE_DLQ)]
    assert sorted(letter["reason"] for letter in letters) == ["beyond_retention"] * (1 + len(same_partition))
    tombstones = [m for m in read_all(bootstrap, state_topic(prefix + "billing-usage")) if m.value() is None]
    assert tombstones, "the purge wrote no tombstone: it did not run"
