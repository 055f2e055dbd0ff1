"""Exact under faults, on the real broker: usage produced while the worker and the sink are killed
with SIGKILL and restarted, and while a second worker joins (a rebalance), ends up in ClickHouse
exactly as an independent oracle computes from the produced events; every invalid event is in
the dead-letter topic with its reason, and nothing else is.

Sizes: FAULT_EVENTS (default 200_000) events over FAULT_SUBSCRIPTIONS subscriptions.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import avro_codec
from streams.kafka import messages
from streams.kafka.partitioning import PRODUCER_PARTITIONER, partition_of
from streams.kafka.worker import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS, USAGE_WINDOWS
from streams.operators.records import UsageEvent
from streams.operators.windows import Granularity
from tests.faults.ground_truth import MetricSpec, Produced, expected_windows, invalid_reason

pytestmark = [pytest.mark.faults, pytest.mark.integration]

EVENTS = int(os.environ.get("FAULT_EVENTS", "200000"))
SUBSCRIPTIONS = int(os.environ.get("FAULT_SUBSCRIPTIONS", "300"))
PARTITIONS = 4
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPAN_MS = 40 * 86_400_000  # crosses a month boundary in every timezone
TIMEZONES = ("UTC", "Asia/Jakarta", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Australia/Adelaide")
METRICS = {
    "api_calls": MetricSpec("SUM"),
    "runs": MetricSpec("COUNT"),
    "peak_rps": MetricSpec("MAX"),
    "seats": MetricSpec("LATEST", counter=False),
    "active_users": MetricSpec("UNIQUE_COUNT"),
    "storage_gb": MetricSpec("TIME_WEIGHTED_SUM", counter=False),
}
ROOT = Path(__file__).resolve().parents[2]


def catalog_file(path: Path) -> Path:
    """A scenario file the worker reads its metrics and subscriptions from."""
    metrics = []
    for code, spec in METRICS.items():
        metric: dict[str, Any] = {"code": code, "aggregation": spec.aggregation}
        if not spec.counter:
            metric["type"] = "GAUGE"
        if spec.aggregation == "UNIQUE_COUNT":
            metric["field"] = "user"
        metrics.append(metric)
    scenario = {
        "tenant_id": "t1",
        "metrics": metrics,
        "plans": [{"code": "p", "currency_code": "USD", "base_price": "0", "meters": []}],
        "subscriptions": [
            {
                "id": f"s{n}",
                "plan_code": "p",
                "start_at": "2025-12-01T00:00:00Z",
                "timezone": TIMEZONES[n % len(TIMEZONES)],
            }
            for n in range(SUBSCRIPTIONS)
        ],
        "run_until": "2026-03-01T00:00:00Z",
    }
    path.write_text(yaml.safe_dump(scenario))
    return path


@dataclass
class Workload:
    """Messages to produce, each (partition, value bytes, key, [Produced] or None if undecodable)."""

    messages: list[tuple[int, bytes, bytes, list[Produced] | None]] = field(default_factory=list)
    produced: list[Produced] = field(default_factory=list)


def workload(seed: int, now_ms: int) -> Workload:
    """≥ EVENTS events: 5% exact duplicates, 1% conflicts, 10% out of order, invalid of every kind;
    one event per message or batches of up to 50, grouped by partition."""
    rng = random.Random(seed)
    events: list[Produced] = []
    for n in range(EVENTS):
        sub = f"s{rng.randrange(SUBSCRIPTIONS)}"
        metric = rng.choice(sorted(METRICS))
        value = float(rng.randrange(0, 1000)) / rng.choice((1, 4, 1000))
        at = BASE_MS + rng.randrange(SPAN_MS)
        user = f"u{rng.randrange(30)}" if metric == "active_users" else None
        events.append(Produced(sub, metric, value, at, f"k{n}", user))
    events.sort(key=lambda e: e.recorded_at_ms)  # in event-time order, then 10% moved out of order
    for _ in range(len(events) // 10):
        i, j = rng.randrange(len(events)), rng.randrange(len(events))
        events[i], events[j] = events[j], events[i]
    stream: list[Produced] = []
    for event in events:
        stream.append(event)
        roll = rng.random()
        if roll < 0.05:
            stream.append(event)  # exact duplicate: a producer retry
        elif roll < 0.06:
            stream.append(
                Produced(
                    event.subscription_id,
                    event.metric_code,
                    event.value + 1,
                    event.recorded_at_ms,
                    event.idempotency_key,
                    event.user,
                )
            )
    for kind in range(8 * 30):  # invalid events of every kind, 30 each
        base = rng.choice(events)
        bad = {
            0: dict(metric_code="no_such_metric"),
            1: dict(subscription_id="s_unknown"),
            2: dict(idempotency_key=""),
            3: dict(value=math.nan),
            4: dict(value=math.inf),
            5: dict(metric_code="api_calls", value=-3.0),
            6: dict(recorded_at_ms=now_ms + 86_400_000),
            7: dict(subscription_id=""),
        }[kind % 8]
        fields = {**base.__dict__, **bad, "idempotency_key": bad.get("idempotency_key", f"bad{kind}")}
        stream.insert(rng.randrange(len(stream)), Produced(**fields))
    out = Workload(produced=stream)
    i = 0
    while i < len(stream):
        size = 1 if rng.random() < 0.5 else rng.randrange(2, 51)
        chunk = stream[i : i + size]
        i += size
        by_partition: dict[int, list[Produced]] = {}
        for event in chunk:
            sub = event.subscription_id
            by_partition.setdefault(partition_of(sub, PARTITIONS), []).append(event)
        for partition, group in by_partition.items():
            payload = [
                messages.usage_event_avro(
                    UsageEvent(
                        f"id-{e.idempotency_key}",
                        e.tenant_id,
                        e.subscription_id,
                        e.metric_code,
                        e.value,
                        e.recorded_at_ms,
                        e.idempotency_key,
                        {"user": e.user} if e.user else {},
                    )
                )
                for e in group
            ]
            value = (
                avro_codec.encode("usage_event.v2", payload[0])
                if len(payload) == 1
                else avro_codec.encode("usage_event_batch.v1", {"events": payload})
            )
            out.messages.append((partition, value, group[0].subscription_id.encode(), group))
        if rng.random() < 0.0005:  # undecodable bytes
            out.messages.append((rng.randrange(PARTITIONS), b"\x00\x00\x00\x00\x65garbage", b"junk", None))
    return out


class Processes:
    """Worker and sink subprocesses that the test kills and restarts."""

    def __init__(self, tmp: Path, bootstrap: str, catalog: Path) -> None:
        self.tmp, self.bootstrap, self.catalog = tmp, bootstrap, catalog
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(ROOT)}
        self.env.pop("CLICKHOUSE_URL", None)

    def start(self, name: str) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        if name.startswith("worker"):
            args = [
                "worker",
                "--catalog",
                str(self.catalog),
                "--partitions",
                str(PARTITIONS),
                "--store",
                "rocksdb" if name == "worker" else "memory",
                "--data-dir",
                str(self.tmp / name),
                "--batch-max",
                "500",
                "--retention-days",
                "3650",
                "--log-level",
                "warning",
            ]
        else:
            args = ["sink", "--data-dir", str(self.tmp / "sink")]
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "billing.cli", *args], env=self.env, stdout=log, stderr=log, cwd=ROOT
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def kill_all(self) -> None:
        """Whatever still runs when the test ends, passed or failed: no worker outlives it."""
        for name in list(self.procs):
            self.kill(name)


READ_SINK_STORE = """
import json, sys
from streams.clickhouse.client import open_client
client = open_client(None, sys.argv[1])
rows = client.query(
    "SELECT subscription_id, metric_code, granularity, toUnixTimestamp64Milli(window_start), event_count, "
    "toString(total), toString(maximum), toString(latest_value), toString(tw_integral), uniques "
    "FROM billing.usage_windows FINAL"
).result_rows
raw = client.query("SELECT count() FROM billing.usage_events FINAL").result_rows[0][0]
json.dump({"rows": [list(r) for r in rows], "raw": raw}, sys.stdout)
"""


def read_sink_store(path: Path) -> tuple[list[list[Any]], int]:
    """The sink's windows and distinct-event count, read in a process of its own: chDB serves one
    data path per process, and this test process may already hold the session's."""
    done = subprocess.run(
        [sys.executable, "-c", READ_SINK_STORE, str(path)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    found = json.loads(done.stdout)
    return found["rows"], int(found["raw"])


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in tps}
    finally:
        consumer.close()


def caught_up(bootstrap: str) -> bool:
    ends = {(USAGE_EVENTS, p): o for p, o in end_offsets(bootstrap, USAGE_EVENTS).items()}
    if committed(bootstrap, "billing-usage", [USAGE_EVENTS]) != ends:
        return False
    sink_ends = {(t, p): o for t in (USAGE_ACCEPTED, USAGE_WINDOWS) for p, o in end_offsets(bootstrap, t).items()}
    done = committed(bootstrap, "billing-sink", [USAGE_ACCEPTED, USAGE_WINDOWS])
    return all(done[tp] == end or (end == 0 and done[tp] < 0) for tp, end in sink_ends.items())


def read_all(bootstrap: str, topic: str) -> list[Any]:
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    out = []
    seen = Counter[int]()
    while any(seen[p] < ends[p] for p in range(PARTITIONS)):
        for message in consumer.consume(1000, timeout=1.0):
            if message.error() is None:
                out.append(message)
                seen[message.partition()] = message.offset() + 1
    consumer.close()
    return out


def fresh_topics(admin: AdminClient, names: tuple[str, ...]) -> None:
    """The pipeline's topics, empty and with PARTITIONS partitions: other tests on the session's
    broker may have made them already, and the dead-letter check counts every record on them."""
    existing = [name for name in names if name in admin.list_topics(timeout=30).topics]
    for future in admin.delete_topics(existing, operation_timeout=30).values() if existing else ():
        future.result()
    deadline = time.monotonic() + 60
    while any(name in admin.list_topics(timeout=30).topics for name in existing):
        assert time.monotonic() < deadline, f"topics {existing} were not deleted"
        time.sleep(0.2)
    while missing := [name for name in names if name not in admin.list_topics(timeout=30).topics]:
        for name, future in admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in missing]).items():
            try:
                future.result()
            except KafkaException as error:  # deletion still settling on the controller
                assert time.monotonic() < deadline, f"could not create {name}: {error}"
                time.sleep(0.5)


def test_exact_usage_under_sigkills_and_a_rebalance(kafka_broker, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    bootstrap = kafka_broker.bootstrap
    pipeline = (USAGE_EVENTS, USAGE_DLQ, USAGE_ACCEPTED, USAGE_WINDOWS)
    fresh_topics(AdminClient({"bootstrap.servers": bootstrap}), pipeline)
    now_ms = int(time.time() * 1000)
    work = workload(seed=11, now_ms=now_ms)
    catalog = catalog_file(tmp_path / "catalog.yaml")
    procs = Processes(tmp_path, bootstrap, catalog)
    request.addfinalizer(procs.kill_all)
    procs.start("worker")
    procs.start("sink")

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

    def produce() -> None:
        for n, (partition, value, key, group) in enumerate(work.messages):

            def on_delivery(err, msg, group=group):  # type: ignore[no-untyped-def]
                assert err is None, err
                delivered[(msg.partition(), msg.offset())] = group

            while True:
                try:
                    producer.produce(USAGE_EVENTS, value=value, key=key, partition=partition, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            if n % 2000 == 0:
                producer.poll(0)
                time.sleep(0.02)  # spread production over the faults
        producer.flush(60)

    producing = threading.Thread(target=produce)
    producing.start()
    rng = random.Random(5)
    faults = ["worker", "sink", "worker", "rebalance", "sink", "worker", "sink"]
    for fault in faults:
        time.sleep(rng.uniform(4, 9))
        if fault == "rebalance":
            procs.start("worker2")  # joins the group: partitions move, state restores from changelogs
            time.sleep(rng.uniform(10, 15))
            procs.kill("worker2")  # and leaves abruptly: partitions move back
            continue
        procs.kill(fault)
        time.sleep(rng.uniform(0.5, 2))
        procs.start(fault)
    producing.join()
    assert len(delivered) == len(work.messages)

    # The worker drains about 100 messages/s of this mix on two shared cores (docs/streaming.md,
    # Performance): catching up after the faults takes 5 to 10 minutes. The deadline only guards
    # against a stuck pipeline; exactness is what the assertions below check.
    deadline = time.monotonic() + 1800
    while not caught_up(bootstrap):
        assert procs.alive("worker") and procs.alive("sink"), "a process died on its own; see logs in " + str(tmp_path)
        assert time.monotonic() < deadline, "pipeline did not catch up"
        time.sleep(2)
    procs.stop("worker")
    procs.stop("sink")  # releases the chDB directory

    # Windows in ClickHouse equal the oracle's, at every granularity.
    timezones = {f"s{n}": TIMEZONES[n % len(TIMEZONES)] for n in range(SUBSCRIPTIONS)}
    expected, distinct = expected_windows(work.produced, METRICS, timezones, now_ms)
    rows, raw_count = read_sink_store(tmp_path / "sink" / "chdb")
    actual = {}
    for sub, metric, gran, start, count, total, maximum, latest, integral, uniques in rows:
        actual[(sub, metric, gran, int(start))] = (
            count,
            Decimal(total),
            Decimal(maximum),
            Decimal(latest),
            Decimal(integral),
            frozenset(uniques),
        )
    assert {g.value for g in Granularity} == {k[2] for k in expected}
    missing = expected.keys() - actual.keys()
    extra = actual.keys() - expected.keys()
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    wrong = []
    for key, want in expected.items():
        got = actual[key]
        spec = METRICS[key[1]]
        fields = (
            want.event_count,
            want.total,
            want.maximum,
            want.latest,
            want.tw_integral if spec.aggregation == "TIME_WEIGHTED_SUM" else got[4],
            want.uniques,
        )
        if got != fields:
            wrong.append((key, got, fields))
    assert not wrong, wrong[:5]
    assert raw_count == len(distinct)

    # Every invalid event (and every conflict) is dead-lettered with its reason; nothing else is.
    want_letters: Counter[tuple[int, int, int | None, str]] = Counter()
    first_payload: dict[tuple[str, str], Produced] = {}
    for (partition, offset), group in delivered.items():
        if group is None:
            want_letters[(partition, offset, None, "undecodable")] += 1
            continue
    ordered = sorted(delivered.items())
    for (partition, offset), group in ordered:
        if group is None:
            continue
        for index, event in enumerate(group):
            where = index if len(group) > 1 else None
            reason = invalid_reason(event, METRICS, timezones, now_ms, 5 * 60_000)
            if reason is None:
                identity = (event.subscription_id, event.idempotency_key)
                seen = first_payload.setdefault(identity, event)
                if seen is not event and seen != event:
                    reason = "idempotency_conflict"
            if reason is not None:
                want_letters[(partition, offset, where, reason)] = 1
    got_letters = set()
    for message in read_all(bootstrap, USAGE_DLQ):
        letter = messages.read_dead_letter(message.value())
        field_path = letter["field"] or ""
        index = int(field_path[len("events[") : field_path.index("]")]) if field_path.startswith("events[") else None
        got_letters.add((letter["source_partition"], letter["source_offset"], index, letter["reason"]))
    assert got_letters == set(want_letters), (
        sorted(set(want_letters) - got_letters)[:5],
        sorted(got_letters - set(want_letters))[:5],
    )
    reemitted = len(read_all(bootstrap, USAGE_ACCEPTED)) - len(distinct)  # redelivered after crashes
    summary = {
        "events": len(work.produced),
        "messages": len(work.messages),
        "distinct_accepted": len(distinct),
        "accepted_reemitted_after_crashes": reemitted,
        "windows_checked": len(expected),
        "dead_letters": len(got_letters),
    }
    print(json.dumps(summary))
