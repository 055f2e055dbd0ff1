"""Benchmark: usage from produce to queryable in ClickHouse through the real broker, the Faust
worker and the sink, one event per message and batched; each printed with the ratio to a raw
confluent-kafka consumer reading the same topic in the same run; then event-to-queryable latency
p50/p99 at half the batched peak rate.

    python bench/kafka_pipeline.py [--events 100000] [--batch 100] [--partitions 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from confluent_kafka import Consumer, TopicPartition

from streams.generate import generate
from streams.kafka.producer import UsageProducer, ensure_topics
from streams.kafka.worker import USAGE_ACCEPTED, USAGE_EVENTS, USAGE_WINDOWS

ROOT = Path(__file__).resolve().parents[1]
BASE_MS = 1_767_225_600_000
SUBSCRIPTIONS = [f"sub_{n:05d}" for n in range(1000)]
METRICS = ["api_calls", "storage_gb", "active_users"]

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


def offsets(bootstrap: str, topic: str, partitions: int, group: str | None = None) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or "bench-probe"})
    try:
        if group is None:
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
            )
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in tps)
    finally:
        consumer.close()


def caught_up(bootstrap: str, partitions: int) -> bool:
    if offsets(bootstrap, USAGE_EVENTS, partitions, "billing-usage") < offsets(bootstrap, USAGE_EVENTS, partitions):
        return False
    for topic in (USAGE_ACCEPTED, USAGE_WINDOWS):
        if offsets(bootstrap, topic, partitions, "billing-sink") < offsets(bootstrap, topic, partitions):
            return False
    return True


def raw_consume(bootstrap: str, partitions: int, events_per_message: int) -> float:
    """Baseline: a plain consumer reading (not decoding) the whole topic; events/s."""
    total = offsets(bootstrap, USAGE_EVENTS, partitions)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"raw-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(USAGE_EVENTS, p, 0) for p in range(partitions)])
    started = time.perf_counter()
    seen = 0
    while seen < total:
        seen += sum(1 for m in consumer.consume(10_000, timeout=1.0) if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    return total * events_per_message / elapsed


def run_mode(events: int, batch: int, partitions: int, rate: float | None = None) -> dict[str, float]:
    """A fresh broker, worker and sink; produce ``events``; time until all are queryable."""
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        work = Path(tmp)
        broker = ops_kafka.KafkaBroker(work / "kafka").start()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "PYTHONPATH": str(ROOT)}
        env.pop("CLICKHOUSE_URL", None)
        ensure_topics(broker.bootstrap, partitions)
        latency_log = work / "latency.txt"
        cmd = [sys.executable, "-m", "billing.cli"]
        worker = subprocess.Popen(
            [
                *cmd,
                "worker",
                "--catalog",
                str(catalog(work / "catalog.yaml")),
                "--partitions",
                str(partitions),
                "--store",
                "rocksdb",
                "--data-dir",
                str(work / "worker"),
                "--retention-days",
                "3650",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "worker.log", "wb"),  # noqa: SIM115
        )
        sink = subprocess.Popen(
            [
                *cmd,
                "sink",
                "--data-dir",
                str(work / "sink"),
                "--latency-log",
                str(latency_log),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "sink.log", "wb"),  # noqa: SIM115
        )
        try:
            # warm up: one event through the whole path, so start-up is not measured
            producer = UsageProducer(broker.bootstrap, batch_size=1)
            producer.send_all(generate(1, SUBSCRIPTIONS, METRICS, start_ms=BASE_MS, seed=99))
            producer.flush()
            while (
                not caught_up(broker.bootstrap, partitions) or offsets(broker.bootstrap, USAGE_WINDOWS, partitions) == 0
            ):
                time.sleep(0.5)
            latency_log.unlink(missing_ok=True)
            producer = UsageProducer(broker.bootstrap, batch_size=batch)
            started = time.perf_counter()
            for n, event in enumerate(generate(events, SUBSCRIPTIONS, METRICS, start_ms=BASE_MS, seed=1)):
                producer.send(event)
                if rate is not None and n % 500 == 0:
                    ahead = n / rate - (time.perf_counter() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            producer.flush()
            produced = time.perf_counter() - started
            while not caught_up(broker.bootstrap, partitions):
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            baseline = raw_consume(broker.bootstrap, partitions, batch)
            samples = sorted(float(x) for x in latency_log.read_text().split()) if latency_log.exists() else [0.0]
        finally:
            for process in (worker, sink):
                process.terminate()
            for process in (worker, sink):
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            broker.stop(timeout=5)
    return {
        "events_per_s": events / elapsed,
        "produce_s": produced,
        "elapsed_s": elapsed,
        "baseline_events_per_s": baseline,
        "p50": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--single-events", type=int, default=30_000, help="events for the one-per-message run")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    for label, events, batch in (
        ("one event per message", args.single_events, 1),
        (f"batched ({args.batch}/message)", args.events, args.batch),
    ):
        result = run_mode(events, batch, args.partitions)
        ratio = result["events_per_s"] / result["baseline_events_per_s"]
        print(
            f"{label}: {result['events_per_s']:,.0f} events/s produce→queryable ({events:,} events, "
            f"{result['elapsed_s']:.1f} s); raw consumer on the same topic {result['baseline_events_per_s']:,.0f} "
            f"events/s; ratio {ratio:.3f}"
        )
    batched = result
    half = batched["events_per_s"] / 2
    paced = run_mode(max(args.events // 2, int(half * 20)), args.batch, args.partitions, rate=half)
    print(
        f"latency at half the batched peak ({half:,.0f} events/s): event→queryable p50 {paced['p50']:.3f} s, "
        f"p99 {paced['p99']:.3f} s"
    )


if __name__ == "__main__":
    main()
