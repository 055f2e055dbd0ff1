"""Benchmark: usage from produce to queryable in ClickHouse through the real broker, the Faust
worker (``billing worker``) and the sink (``billing sink``, embedded chDB).

One broker for the whole run; each measurement runs its own worker and sink on topics of its own
(``--topic-prefix``, ``--app-id``), so runs never see each other's data:

1. one event per message, as fast as the pipeline goes;
2. batched messages (``--batch`` events of one subscription per message), as fast as it goes;
3. batched messages paced at half the rate measured in 2: event-to-queryable latency p50/p99.

Each throughput is printed with the ratio to a raw confluent-kafka consumer reading the same
topic (the same messages, not decoded) in the same run: the floor any Kafka consumer pays here;
and with the ratio to a peer that does the least a meter could: a plain confluent-kafka consumer
decoding the same Avro and summing values per (subscription, metric, hour) into chDB, with no
dedup and no crash safety. Ours over the peer's is the price of exactness (issue 11 aims at 0.5).

"Produce to queryable": the clock starts when the first message is handed to the producer and
stops when the sink has committed (after writing to chDB) every output the worker made of the
last message. The worker commits every ``--commit-interval`` seconds, so the bench watches the
sink's commits continuously and, once the worker's commit shows it has flushed everything, takes
the first moment the sink had covered those outputs. Messages are encoded before the clock starts
(the producing client's CPU is not the pipeline's); the producer is confluent-kafka with the
SDK's settings (``streams.ingest.producer.TUNING``: idempotent, ``acks=all``, lz4).

Latency is measured from outside the sink, on its committed offsets: for every window row of the
paced run, the seconds from the Kafka timestamp of the source message that last changed it in its
worker batch (carried by the worker: the ``produced_at`` column of its window batch messages)
to the first moment the bench saw the sink's commit pass the
row (polled every 20 ms, so up to about 20 ms more than the commit itself); an older message of
the same worker batch waits a little longer than that.

``--profile DIR`` samples the worker and the sink with py-spy (a developer tool: pip install
py-spy) into collapsed stacks, ``--only single|batched`` runs one throughput measurement.

    python bench/kafka_pipeline.py [--events 15000] [--single-events 5000] [--batch 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas import avro_codec
from streams.clickhouse.columns import PRODUCED_AT
from streams.generate import generate
from streams.ingest.producer import TUNING
from streams.kafka import messages
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS, USAGE_WINDOWS, ensure_topics
from streams.operators.records import UsageEvent

ROOT = Path(__file__).resolve().parents[1]
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SUBSCRIPTIONS = [f"sub_{n:05d}" for n in range(1000)]
METRICS = ["api_calls", "storage_gb", "active_users"]
SINK_GROUP = "billing-sink"  # the sink's consumer group, after its --topic-prefix
WAIT_S = 180.0
"""A run that has not caught up after this many seconds past its last message fails."""

spec = importlib.util.spec_from_file_location("ops_kafka", ROOT / "ops" / "kafka.py")
assert spec is not None and spec.loader is not None
ops_kafka = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ops_kafka)


def catalog(path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "tenant_id": "t1",
                "metrics": [
                    {"code": "api_calls", "aggregation": "SUM"},
                    {"code": "storage_gb", "type": "GAUGE", "aggregation": "TIME_WEIGHTED_SUM"},
                    {"code": "active_users", "aggregation": "UNIQUE_COUNT", "field": "user"},
                ],
                "plans": [{"code": "p", "currency_code": "USD", "base_price": "0"}],
                "subscriptions": [
                    {"id": s, "plan_code": "p", "start_at": "2025-12-01T00:00:00Z", "timezone": "Asia/Jakarta"}
                    for s in SUBSCRIPTIONS
                ],
                "run_until": "2026-03-01T00:00:00Z",
            }
        )
    )
    return path


def encode(events: Sequence[UsageEvent], batch: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, events in it) per message, grouped as ``UsageProducer`` groups them: one event
    per message, or ``batch`` events of one subscription (the rest at the end)."""
    if batch == 1:
        return [
            (e.subscription_id.encode(), avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(e)), 1)
            for e in events
        ]
    out: list[tuple[bytes, bytes, int]] = []
    pending: dict[str, list[UsageEvent]] = {}

    def emit(group: list[UsageEvent]) -> None:
        value = avro_codec.encode(messages.USAGE_EVENT_BATCH, {"events": [messages.usage_event_avro(e) for e in group]})
        out.append((group[0].subscription_id.encode(), value, len(group)))

    for event in events:
        group = pending.setdefault(event.subscription_id, [])
        group.append(event)
        if len(group) == batch:
            emit(pending.pop(event.subscription_id))
    for group in pending.values():
        emit(group)
    return out


class Offsets:
    """End offsets of topics and committed offsets of groups, through long-lived probe consumers
    (they never subscribe, so they never join the groups they read)."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.consumers: dict[str, Consumer] = {}

    def _consumer(self, group: str) -> Consumer:
        if group not in self.consumers:
            self.consumers[group] = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        return self.consumers[group]

    def ends(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        probe = self._consumer("bench-probe")
        return {
            (t, p): probe.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
            for t in topics
            for p in range(self.partitions)
        }

    def committed(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        wanted = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
        for attempt in range(50):
            try:
                tps = self._consumer(group).committed(wanted, timeout=10)
                return {(tp.topic, tp.partition): max(0, tp.offset) for tp in tps}
            except KafkaException as error:  # a new group's coordinator is still loading: retriable
                if not error.args[0].retriable() and error.args[0].code() != KafkaError.NOT_COORDINATOR:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise RuntimeError(f"no committed offsets of {group} from the broker")

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process ``root`` and every live descendant (``/proc``): what
    ``billing worker --processes N`` spends is in its children."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier.extend(children)
    return sum(used.get(pid, 0.0) for pid in tree)


class CommitWatch(threading.Thread):
    """The sink's committed offsets of one topic, polled every 20 ms, each with the wall-clock time
    it was seen: when each row became queryable, seen from outside the sink."""

    def __init__(self, bootstrap: str, partitions: int, group: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.offsets = Offsets(bootstrap, partitions)  # its own probe consumers: one per thread
        self.group, self.topic = group, topic
        self.seen: list[tuple[float, dict[tuple[str, int], int]]] = []
        self.stopping = threading.Event()

    def poll(self) -> None:
        committed = self.offsets.committed(self.group, [self.topic])
        self.seen.append((time.time(), committed))

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            self.poll()

    def stop(self) -> None:
        """Stop polling, after one last look (the run is done: it covers every row)."""
        self.stopping.set()
        self.join()
        self.poll()
        self.offsets.close()


def row_stamps(
    bootstrap: str, start: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> list[tuple[tuple[str, int], int, int]]:
    """(topic partition, offset, produced-at ms) of every committed window row between ``start``
    and ``ends``: the rows whose latency is measured. A batch message (``window_batch``) gives one
    per row, from its ``produced_at`` column (the newest source message that changed the row); an
    older worker's single-row message its Kafka timestamp."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"stamps-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    wanted = [tp for tp, end in ends.items() if end > start.get(tp, 0)]
    consumer.assign([TopicPartition(topic, p, start.get((topic, p), 0)) for topic, p in wanted])
    stamps: list[tuple[tuple[str, int], int, int]] = []
    deadline = time.monotonic() + 60
    while wanted:
        for message in consumer.consume(10_000, timeout=0.5):
            kind, stamp = message.timestamp()
            value = message.value()
            if message.error() or value is None:
                continue  # an error event or a tombstone: the sink measures neither
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None  # a message proper
            if messages.is_window_batch(value):
                column = messages.read_window_batch(value).column(PRODUCED_AT).drop_null().cast("int64")
                stamps.extend(((topic, partition), offset, row) for row in column.to_pylist())
            elif kind != 0:  # a row without a timestamp is not measured, by the sink either
                stamps.append(((topic, partition), offset, stamp))
        # positions pass the transaction markers too, where the last message's offset would not
        positions = consumer.position([TopicPartition(topic, p) for topic, p in wanted])
        wanted = [(tp.topic, tp.partition) for tp in positions if tp.offset < ends[(tp.topic, tp.partition)]]
        if time.monotonic() > deadline:
            raise RuntimeError(f"window rows not read back by 60 s: {wanted}")
    consumer.close()
    return stamps


def queryable_latencies(
    stamps: list[tuple[tuple[str, int], int, int]], seen: list[tuple[float, dict[tuple[str, int], int]]]
) -> list[float]:
    """For each row, seconds from its produced-at stamp to the first look at the committed offsets
    that had passed it (offsets only grow, so one walk per partition)."""
    latencies: list[float] = []
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for tp, offset, stamp in stamps:
        by_partition.setdefault(tp, []).append((offset, stamp))
    for tp, rows in by_partition.items():
        look = 0
        for offset, stamp in sorted(rows):
            while look < len(seen) and seen[look][1].get(tp, 0) <= offset:
                look += 1
            if look == len(seen):
                raise RuntimeError(f"{tp} offset {offset}: never committed by the sink")
            latencies.append(max(0.0, seen[look][0] - stamp / 1000))
    return latencies


def covers(committed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]) -> bool:
    return all(committed.get(tp, 0) >= end for tp, end in ends.items())


@dataclass
class Result:
    events: int
    messages: int
    produce_s: float
    elapsed_s: float
    baseline_events_per_s: float
    latencies: list[float]
    peer_events_per_s: float = 0.0
    cpu_s: dict[str, float] | None = None
    """CPU seconds each process (and its children) used while the run was measured."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s

    def cpu_line(self) -> str:
        """Where the time went: each process's CPU seconds over the measured wall time."""
        used = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in (self.cpu_s or {}).items())
        per_event = sum((self.cpu_s or {}).values()) / self.events * 1e6
        wall = f"{self.elapsed_s:.1f} s wall, {os.cpu_count()} cores"
        return f"CPU while measured ({wall}): {used}; {per_event:.0f} µs per event in all"

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Pipeline:
    """``billing worker`` and ``billing sink`` on the topics of one prefix."""

    def __init__(
        self, bootstrap: str, partitions: int, work: Path, name: str, commit_interval: float, processes: int = 1
    ) -> None:
        self.bootstrap, self.partitions, self.work, self.name = bootstrap, partitions, work, name
        self.prefix = f"{name}."
        self.app_id = f"bench-{name}"
        self.topics = {t: self.prefix + t for t in (USAGE_EVENTS, USAGE_DLQ, USAGE_ACCEPTED, USAGE_WINDOWS)}
        admin = AdminClient({"bootstrap.servers": bootstrap})
        ensure_topics(admin, partitions, topics=list(self.topics.values()))
        python = [sys.executable, "-m", "billing.cli"]
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(ROOT)}
        env.pop("CLICKHOUSE_URL", None)
        common = ["--topic-prefix", self.prefix, "--log-level", "warning"]
        self.worker_log = work / f"{name}-worker.log"
        self.sink_log = work / f"{name}-sink.log"
        self.worker = subprocess.Popen(
            [
                *python,
                "worker",
                "--catalog",
                str(catalog(work / f"{name}-catalog.yaml")),
                "--partitions",
                str(partitions),
                "--store",
                "rocksdb",
                "--processes",
                str(processes),
                "--data-dir",
                str(work / f"{name}-worker"),
                "--retention-days",
                "3650",
                "--app-id",
                self.app_id,
                "--commit-interval",
                str(commit_interval),
                *common,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(self.worker_log, "wb"),  # noqa: SIM115 - owned by the child
        )
        self.sink = subprocess.Popen(
            [
                *python,
                "sink",
                "--data-dir",
                str(work / f"{name}-sink"),
                *common,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(self.sink_log, "wb"),  # noqa: SIM115
        )
        self.offsets = Offsets(bootstrap, partitions)

    def processes(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        return [("worker", self.worker), ("sink", self.sink)]

    def check(self) -> None:
        """Fail loudly, with the logs, if the worker or the sink is gone or the agent crashed."""
        crashed = "Crashed reason=" in self.worker_log.read_text(errors="replace")
        for label, process, log in (("worker", self.worker, self.worker_log), ("sink", self.sink, self.sink_log)):
            if process.poll() is not None or (label == "worker" and crashed):
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"{self.name}: the {label} failed (exit {process.poll()}):\n{tail}")

    def wait_done(self, deadline: float) -> float:
        """Wait until everything produced so far is queryable; returns the perf_counter time at
        which the sink had committed all of it (to the probe interval, 20 ms)."""
        source = [self.topics[USAGE_EVENTS]]
        outputs = [self.topics[USAGE_ACCEPTED], self.topics[USAGE_WINDOWS]]
        source_ends = self.offsets.ends(source)
        history: list[tuple[float, dict[tuple[str, int], int]]] = []
        output_ends: dict[tuple[str, int], int] | None = None
        while True:
            now = time.perf_counter()
            history.append((now, self.offsets.committed(self.prefix + SINK_GROUP, outputs)))
            if output_ends is None and covers(self.offsets.committed(self.app_id, source), source_ends):
                # the worker commits its outputs (a transaction) before its offsets: these ends are final
                output_ends = self.offsets.ends(outputs)
            if output_ends is not None:
                for at, committed in history:
                    if covers(committed, output_ends):
                        return at
                history = history[-1:]
            if now > deadline:
                raise RuntimeError(f"{self.name}: not caught up after {WAIT_S:.0f} s")
            if len(history) % 25 == 0:
                self.check()
            time.sleep(0.02)

    def stop(self) -> None:
        self.offsets.close()
        for process in (self.worker, self.sink):
            process.terminate()
        for process in (self.worker, self.sink):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def profile(process: subprocess.Popen[bytes], out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling ``process`` (native frames too) into ``out``.txt (collapsed stacks), or
    nothing when profiling is off. py-spy is a developer tool, not a dependency: pip install it."""
    if out is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(process.pid), "--rate", "100", "--format", "raw", "--native"]
    return subprocess.Popen(
        [*command, "--output", f"{out}.txt"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def produce(
    bootstrap: str, topic: str, batch: list[tuple[bytes, bytes, int]], rate: float | None = None
) -> tuple[float, float]:
    """Produce ``batch`` (paced at ``rate`` events/s if given); returns (start, end) perf_counter
    times: from the first message handed over to the last one acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, **TUNING})
    failed: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failed.append(error)

    started = time.perf_counter()
    sent = 0
    for n, (key, value, count) in enumerate(batch):
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        sent += count
        if n % 64 == 0:
            producer.poll(0)
            if rate is not None:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    if producer.flush(60) or failed:
        raise RuntimeError(f"produce failed: {failed[:3]}")
    return started, time.perf_counter()


def raw_consume(bootstrap: str, start: dict[tuple[str, int], int], events: int, total_messages: int) -> float:
    """Baseline: a plain confluent-kafka consumer reading (not decoding) the measured messages,
    from the ``start`` offsets on; events/s."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"raw-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, offset) for (topic, p), offset in start.items()])
    started = time.perf_counter()
    seen = 0
    while seen < total_messages:
        # never ask for more than is left: consume() would wait out its timeout for the rest
        wanted = min(10_000, total_messages - seen)
        seen += sum(1 for m in consumer.consume(wanted, timeout=1.0) if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    return events / elapsed


PEER_TABLE = """
CREATE TABLE IF NOT EXISTS peer.usage_hours
(subscription_id String, metric_code String, hour DateTime64(3, 'UTC'), total Decimal128(12))
ENGINE = MergeTree ORDER BY (subscription_id, metric_code, hour)
"""


def peer_consume(
    bootstrap: str, start: dict[tuple[str, int], int], events: int, total_messages: int, chdb_dir: Path
) -> float:
    """The peer: a plain confluent-kafka consumer that decodes the same Avro and sums values per
    (subscription, metric, hour) into chDB, with no dedup, no validation beyond decoding and no
    crash safety (issue 11: the price of exactness is our rate over this one's); events/s."""
    from decimal import Decimal

    from rating.numbers import decimal_from_double
    from streams.clickhouse.client import open_client

    client = _peer_clients.get(chdb_dir) or _peer_clients.setdefault(chdb_dir, open_client(None, str(chdb_dir)))
    client.command("CREATE DATABASE IF NOT EXISTS peer")
    client.command(PEER_TABLE)
    client.command("TRUNCATE TABLE peer.usage_hours")
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"peer-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, offset) for (topic, p), offset in start.items()])
    started = time.perf_counter()
    seen = 0
    sums: dict[tuple[str, str, int], Decimal] = {}
    while seen < total_messages:
        for message in consumer.consume(min(10_000, total_messages - seen), timeout=1.0):
            if message.error() is not None:
                continue
            seen += 1
            for event in messages.read_usage(message.value()):
                if isinstance(event, UsageEvent):
                    key = (event.subscription_id, event.metric_code, event.recorded_at_ms // 3_600_000)
                    sums[key] = sums.get(key, Decimal(0)) + decimal_from_double(event.value)
    rows = [[sub, metric, hour * 3_600_000, total] for (sub, metric, hour), total in sums.items()]
    client.insert("peer.usage_hours", rows, column_names=["subscription_id", "metric_code", "hour", "total"])
    elapsed = time.perf_counter() - started
    consumer.close()
    return events / elapsed


_peer_clients: dict[Path, Any] = {}
"""chDB serves one data path per process: every peer run shares one."""


def run(
    bootstrap: str,
    work: Path,
    name: str,
    events: int,
    batch: int,
    partitions: int,
    commit_interval: float,
    rate: float | None = None,
    profile_dir: Path | None = None,
    processes: int = 1,
    broker_pid: int | None = None,
) -> Result:
    workload = list(generate(events, SUBSCRIPTIONS, METRICS, start_ms=BASE_MS, seed=1))
    encoded = encode(workload, batch)
    warmup = encode(list(generate(200, SUBSCRIPTIONS, METRICS, start_ms=BASE_MS, seed=99)), 1)
    pipeline = Pipeline(bootstrap, partitions, work, name, commit_interval, processes)
    topic = pipeline.topics[USAGE_EVENTS]
    try:
        # warm up: start-up, partition assignment and the first table writes are not measured
        produce(bootstrap, topic, warmup)
        pipeline.wait_done(time.perf_counter() + WAIT_S)
        start = pipeline.offsets.ends([topic])
        time.sleep(1.0)  # let the warm-up's last commits settle: its window rows are not measured
        windows = [pipeline.topics[USAGE_WINDOWS]]
        windows_start = pipeline.offsets.ends(windows)
        # the paced run's latency, from outside the sink; the throughput runs are not watched
        watch = CommitWatch(bootstrap, partitions, pipeline.prefix + SINK_GROUP, windows[0]) if rate else None
        if watch is not None:
            watch.start()
        profilers = [
            profile(process, profile_dir / f"{name}-{label}" if profile_dir else None)
            for label, process in pipeline.processes()
        ]
        watched = {label: process.pid for label, process in pipeline.processes()}
        if broker_pid is not None:
            watched["broker"] = broker_pid
        cpu_before = {label: cpu_seconds(pid) for label, pid in watched.items()}
        started, produced = produce(bootstrap, topic, encoded, rate)
        done = pipeline.wait_done(produced + WAIT_S)
        cpu = {label: cpu_seconds(pid) - cpu_before[label] for label, pid in watched.items()}
        for profiler in profilers:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        latencies: list[float] = []
        if watch is not None:
            windows_end = pipeline.offsets.ends(windows)  # done: the last look will cover these
            watch.stop()
            stamps = row_stamps(bootstrap, windows_start, windows_end)
            latencies = queryable_latencies(stamps, watch.seen)
    finally:
        pipeline.stop()
    baseline = raw_consume(bootstrap, start, events, len(encoded))
    peer = peer_consume(bootstrap, start, events, len(encoded), work / "peer-chdb") if rate is None else 0.0
    return Result(events, len(encoded), produced - started, done - started, baseline, latencies, peer, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--events", type=int, default=100_000, help="events of the batched run (at least 10 s at today's rate)"
    )
    parser.add_argument(
        "--single-events", type=int, default=20_000, help="events of the one-per-message run (at least 10 s)"
    )
    parser.add_argument("--batch", type=int, default=100, help="events per message in the batched runs")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--processes", type=int, default=2, help="worker processes of the scaled batched run (1: no such run)"
    )
    parser.add_argument("--latency-s", type=float, default=20.0, help="length of the paced run")
    parser.add_argument("--commit-interval", type=float, default=1.0, help="the worker's --commit-interval")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the worker and the sink of each run into this directory (collapsed stacks)"
    )
    parser.add_argument(
        "--only", choices=("single", "batched"), help="only this throughput run (no latency run); for profiling"
    )
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        work = Path(tmp)
        broker = ops_kafka.KafkaBroker(work / "kafka").start()
        try:
            results: list[Result] = []
            for name, label, events, batch in (
                ("single", "one event per message", args.single_events, 1),
                ("batched", f"batched ({args.batch} events/message)", args.events, args.batch),
            ):
                if args.only not in (None, name):
                    continue
                result = run(
                    broker.bootstrap,
                    work,
                    name,
                    events,
                    batch,
                    args.partitions,
                    args.commit_interval,
                    profile_dir=args.profile,
                    broker_pid=broker.pid(),
                )
                results.append(result)
                print(
                    f"{label}: {result.events_per_s:,.0f} events/s produce→queryable "
                    f"({events:,} events in {result.messages:,} messages, {result.elapsed_s:.2f} s; "
                    f"producing took {result.produce_s:.2f} s); raw consumer on the same topic "
                    f"{result.baseline_events_per_s:,.0f} events/s; ratio "
                    f"{result.events_per_s / result.baseline_events_per_s:.2g}; peer (plain consumer: decode, "
                    f"sum per subscription, metric and hour into chDB, no dedup) {result.peer_events_per_s:,.0f} "
                    f"events/s; price of exactness (ours / peer) {result.events_per_s / result.peer_events_per_s:.2f}",
                    flush=True,
                )
                print(f"  {result.cpu_line()}", flush=True)
            if args.only in (None, "batched") and args.processes > 1:
                scaled = run(
                    broker.bootstrap,
                    work,
                    "batched-scaled",
                    args.events,
                    args.batch,
                    args.partitions,
                    args.commit_interval,
                    processes=args.processes,
                    broker_pid=broker.pid(),
                )
                print(
                    f"batched ({args.batch} events/message), {args.processes} worker processes: "
                    f"{scaled.events_per_s:,.0f} events/s produce→queryable ({scaled.elapsed_s:.2f} s); "
                    f"over one process: ratio {scaled.events_per_s / results[-1].events_per_s:.2f}",
                    flush=True,
                )
                print(f"  {scaled.cpu_line()}", flush=True)
            if args.only:
                return
            half = results[-1].events_per_s / 2
            paced = run(
                broker.bootstrap,
                work,
                "paced",
                int(half * args.latency_s),
                args.batch,
                args.partitions,
                args.commit_interval,
                rate=half,
                profile_dir=args.profile,
            )
            print(
                f"latency at half the batched peak ({half:,.0f} events/s offered, "
                f"{paced.events_per_s:,.0f} events/s reached over {paced.events:,} events): "
                f"event→queryable p50 {paced.percentile(0.5):.3f} s, p99 {paced.percentile(0.99):.3f} s, "
                f"max {max(paced.latencies, default=float('nan')):.3f} s ({len(paced.latencies):,} window rows)",
                flush=True,
            )
        finally:
            broker.stop(timeout=10)


if __name__ == "__main__":
    main()
