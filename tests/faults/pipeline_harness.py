"""What the streaming fault tests share: a workload with duplicates, conflicts, disorder and every
kind of invalid event; worker and sink processes to kill; and the checks of ClickHouse windows and
dead letters against the independent oracle in ground_truth.py."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import avro_codec
from streams.ingest.partitioning import partition_of
from streams.kafka import messages
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS, USAGE_WINDOWS
from streams.operators.records import UsageEvent
from streams.operators.windows import Granularity
from tests.faults.ground_truth import MetricSpec, Produced, expected_windows, invalid_reason

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
PIPELINE = (USAGE_EVENTS, USAGE_DLQ, USAGE_ACCEPTED, USAGE_WINDOWS)


def timezones(subscriptions: int) -> dict[str, str]:
    return {f"s{n}": TIMEZONES[n % len(TIMEZONES)] for n in range(subscriptions)}


def catalog_file(path: Path, subscriptions: int) -> Path:
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
            {"id": sub, "plan_code": "p", "start_at": "2025-12-01T00:00:00Z", "timezone": tz}
            for sub, tz in timezones(subscriptions).items()
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


def workload(
    seed: int, now_ms: int, events: int, subscriptions: int, batch: tuple[int, int] = (2, 50), single: float = 0.5
) -> Workload:
    """≥ ``events`` events: 5% exact duplicates, 1% conflicts, 10% out of order, invalid of every
    kind; one event per message (probability ``single``) or batches of ``batch`` sizes, grouped by
    partition. An exact duplicate often travels in another message shape than its original."""
    rng = random.Random(seed)
    base: list[Produced] = []
    for n in range(events):
        sub = f"s{rng.randrange(subscriptions)}"
        metric = rng.choice(sorted(METRICS))
        value = float(rng.randrange(0, 1000)) / rng.choice((1, 4, 1000))
        at = BASE_MS + rng.randrange(SPAN_MS)
        user = f"u{rng.randrange(30)}" if metric == "active_users" else None
        base.append(Produced(sub, metric, value, at, f"k{n}", user))
    base.sort(key=lambda e: e.recorded_at_ms)  # in event-time order, then 10% moved out of order
    for _ in range(len(base) // 10):
        i, j = rng.randrange(len(base)), rng.randrange(len(base))
        base[i], base[j] = base[j], base[i]
    stream: list[Produced] = []
    for event in base:
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
        original = rng.choice(base)
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
        fields = {**original.__dict__, **bad, "idempotency_key": bad.get("idempotency_key", f"bad{kind}")}
        stream.insert(rng.randrange(len(stream)), Produced(**fields))
    out = Workload(produced=stream)
    i = 0
    while i < len(stream):
        size = 1 if rng.random() < single else rng.randrange(batch[0], batch[1] + 1)
        chunk = stream[i : i + size]
        i += size
        by_partition: dict[int, list[Produced]] = {}
        for event in chunk:
            by_partition.setdefault(partition_of(event.subscription_id, PARTITIONS), []).append(event)
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
    """Worker and sink subprocesses that a test kills and restarts; names starting with ``worker``
    are usage workers (``--store`` per name), ``sink`` the sink."""

    def __init__(self, tmp: Path, bootstrap: str, catalog: Path, prefix: str = "", retention_days: int = 3650) -> None:
        self.tmp, self.bootstrap, self.catalog, self.prefix = tmp, bootstrap, catalog, prefix
        self.retention_days = retention_days
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(ROOT)}
        self.env.pop("CLICKHOUSE_URL", None)
        self.env.pop("BILLING_WORKER_KILL_AT", None)
        self.starts: Counter[str] = Counter()
        self.worker_args: list[str] = []
        """Extra arguments for every worker started from now on."""

    def start(self, name: str, store: str = "rocksdb", data_dir: str | None = None, kill_at: str | None = None) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.starts[name] += 1
        if name.startswith("worker"):
            args = [
                "worker",
                "--catalog",
                str(self.catalog),
                "--partitions",
                str(PARTITIONS),
                "--store",
                store,
                "--processes",
                "1",
                "--data-dir",
                str(self.tmp / (data_dir or name)),
                "--batch-max",
                "500",
                "--retention-days",
                str(self.retention_days),
                "--log-level",
                "info",
                *self.worker_args,
            ]
        else:
            args = ["sink", "--data-dir", str(self.tmp / "sink")]
        if self.prefix:
            args += ["--topic-prefix", self.prefix]
        env = dict(self.env)
        if kill_at:
            env["BILLING_WORKER_KILL_AT"] = kill_at
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "billing.cli", *args], env=env, stdout=log, stderr=log, cwd=ROOT
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def wait_dead(self, name: str, timeout: float) -> int:
        """Wait for a process that is to die on its own (a fault-injection kill point)."""
        proc = self.procs.pop(name)
        return proc.wait(timeout=timeout)

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
columns = (
    "subscription_id, metric_code, granularity, toUnixTimestamp64Milli(window_start), event_count, "
    "toString(total), toString(maximum), toString(latest_value), toString(tw_integral), uniques"
)
rows = client.query(  # the buckets the sink wrote, and the hours, days and months ClickHouse folds from them
    f"SELECT {columns} FROM billing.usage_windows FINAL WHERE granularity = '15m' "
    f"UNION ALL SELECT {columns} FROM billing.usage_rollups"
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


def caught_up(bootstrap: str, prefix: str = "") -> bool:
    """The worker group has committed every usage event and the sink every output record."""
    return not lagging(bootstrap, prefix)


def lagging(bootstrap: str, prefix: str = "") -> str:
    """What is not caught up yet ("" when all is): the worker group must have committed every usage
    event, the sink every output record up to the end a read_committed reader reaches."""
    try:
        source = prefix + USAGE_EVENTS
        ends = {(source, p): o for p, o in end_offsets(bootstrap, source).items()}
        done = committed(bootstrap, prefix + "billing-usage", [source])
        if any(not (done[tp] == end or (end == 0 and done[tp] < 0)) for tp, end in ends.items()):
            return f"worker at {done}, events end at {ends}"
        outputs = [prefix + USAGE_ACCEPTED, prefix + USAGE_WINDOWS]
        done = committed(bootstrap, prefix + "billing-sink", outputs)
        for topic in outputs:
            for p, high in end_offsets(bootstrap, topic).items():
                if not (done[(topic, p)] == high or (high == 0 and done[(topic, p)] < 0)):
                    return f"sink at {done[(topic, p)]} of {topic}[{p}], which ends at {high}"
    except KafkaException as error:  # a coordinator still loading, just after the broker or the group started
        return str(error)
    return ""


def read_all(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every record of ``topic`` a reader with ``isolation`` sees (read_uncommitted also sees the
    records of aborted transactions)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    out = []
    pending = set(range(PARTITIONS))
    deadline = time.monotonic() + 300
    while pending:
        assert time.monotonic() < deadline, f"could not read {topic} to its end"
        for message in consumer.consume(1000, timeout=1.0):
            error = message.error()
            if error is None:
                out.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
            else:
                raise KafkaException(error)
    consumer.close()
    return out


def accepted_records(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every accepted record of a ``usage.accepted`` topic a reader with ``isolation`` sees: the
    rows of each batch message (or the one record of an older worker's message)."""
    return [
        record for message in read_all(bootstrap, topic, isolation) for record in messages.read_records(message.value())
    ]


def fresh_topics(admin: AdminClient, names: tuple[str, ...] | list[str]) -> None:
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


def check_windows(produced: list[Produced], subscriptions: int, now_ms: int, sink_store: Path) -> dict[str, int]:
    """Every window in ClickHouse equals the oracle's, at every granularity; the counts checked."""
    zones = timezones(subscriptions)
    expected, distinct = expected_windows(produced, METRICS, zones, now_ms)
    rows, raw_count = read_sink_store(sink_store)
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
    assert not wrong, (len(wrong), wrong[:5])
    assert raw_count == len(distinct), (raw_count, len(distinct))
    return {"windows_checked": len(expected), "distinct_accepted": len(distinct)}


def check_dead_letters(
    bootstrap: str,
    topic: str,
    delivered: dict[tuple[int, int], list[Produced] | None],
    subscriptions: int,
    now_ms: int,
) -> int:
    """Every invalid event and every conflict is dead-lettered exactly once, with its reason and
    nothing else is: the letters compared as a multiset (a doubled letter fails)."""
    zones = timezones(subscriptions)
    want: Counter[tuple[int, int, int | None, str]] = Counter()
    first_payload: dict[tuple[str, str], Produced] = {}
    for (partition, offset), group in sorted(delivered.items()):
        if group is None:
            want[(partition, offset, None, "undecodable")] += 1
            continue
        for index, event in enumerate(group):
            where = index if len(group) > 1 else None
            reason = invalid_reason(event, METRICS, zones, now_ms, 5 * 60_000)
            if reason is None:
                identity = (event.subscription_id, event.idempotency_key)
                seen = first_payload.setdefault(identity, event)
                if seen is not event and seen != event:
                    reason = "idempotency_conflict"
            if reason is not None:
                want[(partition, offset, where, reason)] += 1
    got: Counter[tuple[int, int, int | None, str]] = Counter()
    for message in read_all(bootstrap, topic):
        letter = messages.read_dead_letter(message.value())
        assert len(message.value()) < 300_000, "a dead letter must stay bounded"
        got[(letter["source_partition"], letter["source_offset"], letter["event_index"], letter["reason"])] += 1
    assert got == want, (sorted((want - got).items())[:5], sorted((got - want).items())[:5])
    return sum(got.values())
