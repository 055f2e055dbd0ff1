"""Dedup and window state survive every way a usage worker can lose it (issue 9), on the real broker.

An operator's bad day: events with duplicates (often the same event once inside a batch message and
later alone), conflicts and disorder, produced while the RocksDB-backed worker is killed at the
moments that matter: inside a transaction (records produced, not committed), right after a commit
and before its local checkpoint, in the middle of restoring its state on a fresh data directory,
from outside at random, and while a second worker joins and leaves. Every window in ClickHouse and
every dead letter (as a multiset) equals the independent oracle, and the records of aborted
transactions that a read_uncommitted reader sees prove the kills hit work in flight.

Size: RECOVERY_EVENTS (default 40_000) events over RECOVERY_SUBSCRIPTIONS (default 120).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streams.aggregate.usage_state import state_topic
from streams.ingest.partitioning import PRODUCER_PARTITIONER
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS
from tests.faults.ground_truth import Produced
from tests.faults.pipeline_harness import (
    PIPELINE,
    Processes,
    accepted_records,
    catalog_file,
    caught_up,
    check_dead_letters,
    check_windows,
    committed,
    end_offsets,
    fresh_topics,
    lagging,
    workload,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

EVENTS = int(os.environ.get("RECOVERY_EVENTS", "40000"))
SUBSCRIPTIONS = int(os.environ.get("RECOVERY_SUBSCRIPTIONS", "120"))


def test_no_doubled_event_after_kills_in_the_write_window(kafka_broker, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    bootstrap = kafka_broker.bootstrap
    prefix = f"rec-{uuid.uuid4().hex[:8]}."
    topics = [prefix + t for t in PIPELINE]
    fresh_topics(AdminClient({"bootstrap.servers": bootstrap}), topics)
    now_ms = int(time.time() * 1000)
    work = workload(seed=9, now_ms=now_ms, events=EVENTS, subscriptions=SUBSCRIPTIONS, batch=(7, 200), single=0.6)
    procs = Processes(tmp_path, bootstrap, catalog_file(tmp_path / "catalog.yaml", SUBSCRIPTIONS), prefix)
    request.addfinalizer(procs.kill_all)
    accepted = prefix + USAGE_ACCEPTED
    state = state_topic(prefix + "billing-usage")

    delivered: dict[tuple[int, int], list[Produced] | None] = {}
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "partitioner": PRODUCER_PARTITIONER}
    )
    chunks = 12
    chunk_size = len(work.messages) // chunks + 1
    produced_chunks = threading.Semaphore(0)
    go = threading.Semaphore(0)

    def produce() -> None:
        """In chunks, each released by the fault schedule, so that every fault meets fresh work."""
        for start in range(0, len(work.messages), chunk_size):
            go.acquire()
            for partition, value, key, group in work.messages[start : start + chunk_size]:

                def on_delivery(err, msg, group=group):  # type: ignore[no-untyped-def]
                    assert err is None, err
                    delivered[(msg.partition(), msg.offset())] = group

                while True:
                    try:
                        producer.produce(
                            prefix + USAGE_EVENTS, value=value, key=key, partition=partition, on_delivery=on_delivery
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.flush(60)
            produced_chunks.release()

    producing = threading.Thread(target=produce, daemon=True)
    producing.start()
    rng = random.Random(9)

    def run_chunk() -> None:
        go.release()
        produced_chunks.acquire()

    procs.start("sink")
    # 1. killed inside a transaction (records produced, commit not reached), twice; then right after
    #    a commit, before the local checkpoint mirrors it
    for kill_at in ("produced:2", "produced:1", "committed:2", "committed:1"):
        procs.start("worker", kill_at=kill_at)
        run_chunk()
        assert procs.wait_dead("worker", 300) != 0, kill_at
    # 2. new hosts: empty data directories, killed while restoring (twice); then restored in full
    for fresh in ("worker-fresh-0", "worker-fresh-1"):
        procs.start("worker", data_dir=fresh, kill_at="restoring:1")
        if fresh == "worker-fresh-0":
            run_chunk()
        assert procs.wait_dead("worker", 300) != 0
    procs.start("worker", data_dir="worker-fresh-2")
    run_chunk()
    # 3. a second worker joins (a rebalance) and dies inside a transaction; joins again and leaves
    procs.start("worker2", store="memory", kill_at="produced:1")
    run_chunk()
    assert procs.wait_dead("worker2", 300) != 0
    procs.start("worker2", store="memory")
    run_chunk()
    time.sleep(rng.uniform(2, 5))
    procs.kill("worker2")
    # 4. SIGKILLs from outside at random moments, the sink's too, while chunks arrive
    for fault in ("worker", "sink", "worker", "sink"):
        go.release()
        time.sleep(rng.uniform(0.3, 2.5))
        procs.kill(fault)
        procs.start(fault, data_dir="worker-fresh-2" if fault == "worker" else None)
        produced_chunks.acquire()
    while producing.is_alive():
        go.release()
        producing.join(timeout=0.5)
    assert len(delivered) == len(work.messages)
    # 5. one more kill with a backlog, to time the catch-up (restore, then the backlog)
    events_topic = prefix + USAGE_EVENTS
    backlog = sum(end_offsets(bootstrap, events_topic).values()) - sum(
        max(0, offset) for offset in committed(bootstrap, prefix + "billing-usage", [events_topic]).values()
    )
    procs.kill("worker")
    restarted = time.monotonic()
    procs.start("worker", data_dir="worker-fresh-2")
    while lagging(bootstrap, prefix).startswith(("worker", "Kafka")):
        assert time.monotonic() < restarted + 300, "the worker did not catch up after its restart"
        time.sleep(0.2)
    catch_up_s = time.monotonic() - restarted

    deadline = time.monotonic() + 900
    while not caught_up(bootstrap, prefix):
        assert procs.alive("worker") and procs.alive("sink"), "a process died on its own; see logs in " + str(tmp_path)
        assert time.monotonic() < deadline, "pipeline did not catch up: " + lagging(bootstrap, prefix)
        time.sleep(1)
    procs.stop("worker")
    procs.stop("sink")  # releases the chDB directory

    summary = check_windows(work.produced, SUBSCRIPTIONS, now_ms, tmp_path / "sink" / "chdb")
    summary["dead_letters"] = check_dead_letters(bootstrap, prefix + USAGE_DLQ, delivered, SUBSCRIPTIONS, now_ms)
    committed_records = len(accepted_records(bootstrap, accepted))
    assert committed_records == summary["distinct_accepted"], "an accepted record was emitted twice"
    aborted = len(accepted_records(bootstrap, accepted, "read_uncommitted")) - committed_records
    assert aborted > 0, "no kill hit an open transaction: the test did not test the write window"
    summary["aborted_accepted_records"] = aborted
    summary["state_records"] = sum(end_offsets(bootstrap, state).values())
    summary["events"] = len(work.produced)
    summary["messages"] = len(work.messages)
    summary["catch_up_after_kill_s"] = round(catch_up_s, 2)
    summary["backlog_messages_at_kill"] = backlog
    print(json.dumps(summary))
