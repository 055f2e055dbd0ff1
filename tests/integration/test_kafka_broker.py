"""The project's broker is a real Kafka 4.x: produce and consume round trips with confluent-kafka
(idempotent, acks=all, and transactional) and with aiokafka, the client Faust drives; ops/kafka.py
restarts a broker with its data and stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from tests.kafka_fixtures import Broker, ops_kafka

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def consume(bootstrap: str, topic: str, count: int, **config: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest", **config})
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        for _ in range(60):
            for message in consumer.consume(100, timeout=0.5):
                value = message.value()
                assert message.error() is None and value is not None, message.error()
                got.append(value)
            if len(got) >= count:
                break
    finally:
        consumer.close()
    return got


def test_broker_is_kafka_4(kafka_broker: Broker) -> None:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": kafka_broker.bootstrap}).list_topics(timeout=10)
    assert metadata.brokers
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        assert ops_kafka.VERSION.startswith("4.")
        assert [port for _, _, port in ops_kafka.brokers(int(kafka_broker.bootstrap.rsplit(":", 1)[1]))]


def test_confluent_kafka_round_trip(kafka_broker: Broker) -> None:
    topic = kafka_broker.new_topic("roundtrip", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True, "acks": "all"})
    for n in range(100):
        producer.produce(topic, key=f"sub_{n % 7}".encode(), value=f"event {n}".encode())
    assert producer.flush(30) == 0
    assert sorted(consume(kafka_broker.bootstrap, topic, 100)) == sorted(f"event {n}".encode() for n in range(100))


def test_confluent_kafka_transactions(kafka_broker: Broker) -> None:
    """The transaction state log works on one broker: committed records are read, aborted ones not."""
    topic = kafka_broker.new_topic("txn")
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": f"{topic}-tx"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"committed")
    producer.commit_transaction(30)
    got = consume(kafka_broker.bootstrap, topic, 1, **{"isolation.level": "read_committed"})
    assert got == [b"committed"]


def test_aiokafka_round_trip(kafka_broker: Broker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = kafka_broker.new_topic("aiokafka")

    async def round_trip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            for n in range(20):
                await producer.send_and_wait(topic, f"m{n}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_broker.bootstrap, group_id=topic, auto_offset_reset="earliest"
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            for _ in range(20):
                batch = await consumer.getmany(timeout_ms=1000)
                got += [record.value for records in batch.values() for record in records if record.value]
                if len(got) >= 20:
                    break
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(round_trip()) == [f"m{n}".encode() for n in range(20)]


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="uses an existing cluster")
def test_ops_script_restarts_a_broker_with_its_data(tmp_path: Path) -> None:
    """stop is a clean SIGTERM; start again reuses the formatted storage and the remembered port."""
    script = [sys.executable, str(ROOT / "ops" / "kafka.py")]
    directory = str(tmp_path / "kafka")
    started = subprocess.run([*script, "start", "--dir", directory], capture_output=True, text=True, check=True)
    broker = ops_kafka.KafkaBroker(directory)
    assert f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}" in started.stdout
    try:
        topic = Broker(broker.bootstrap).new_topic("restart")
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        producer.produce(topic, value=b"kept")
        assert producer.flush(30) == 0
        subprocess.run([*script, "stop", "--dir", directory], check=True, capture_output=True)
        stopped = subprocess.run([*script, "status", "--dir", directory], capture_output=True, text=True)
        assert stopped.returncode == 1 and stopped.stdout.startswith("stopped")
        subprocess.run([*script, "start", "--dir", directory], check=True, capture_output=True)
        assert ops_kafka.KafkaBroker(directory).bootstrap == broker.bootstrap
        assert consume(broker.bootstrap, topic, 1) == [b"kept"]
    finally:
        subprocess.run([*script, "stop", "--dir", directory], check=True, capture_output=True)
    assert ops_kafka.KafkaBroker(directory).pid() is None


def test_read_ranges_reads_exact_offset_ranges_and_never_hangs(kafka_broker: Broker) -> None:
    """The one reader of fixed ranges (the worker's gaps and changelogs, rebuild-usage, the tests):
    exactly [start, end) per partition, skipping an aborted transaction's records and markers, done
    at the end of what is committed, and a broker that does not answer raises instead of hanging."""
    import time

    from confluent_kafka import KafkaException

    from streams.kafka.consumers import read_ranges, topic_reader

    topic = kafka_broker.new_topic("ranges", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    for partition in (0, 1):
        producer.begin_transaction()
        for n in range(10):
            producer.produce(topic, value=f"p{partition}-{n}".encode(), partition=partition)
        producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted", partition=1)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"p1-after", partition=1)
    producer.commit_transaction(30)

    def read(ranges: dict[tuple[str, int], tuple[int, int]]) -> list[tuple[int, int, bytes | None]]:
        consumer = topic_reader(kafka_broker.bootstrap, f"{topic}-reader")
        try:
            return [(m.partition() or 0, m.offset() or 0, m.value()) for m in read_ranges(consumer, ranges, 10)]
        finally:
            consumer.close()

    started = time.monotonic()
    assert read({(topic, 0): (2, 5)}) == [(0, 2, b"p0-2"), (0, 3, b"p0-3"), (0, 4, b"p0-4")]
    # done when the range is read, not when the timeout (10 s) runs out: a worker restores each
    # partition's changelog this way
    assert time.monotonic() - started < 5
    # p1: 10 records, a commit marker, the aborted record and its marker, then one more record
    whole = read({(topic, 0): (0, 1_000), (topic, 1): (0, 1_000)})
    assert [v for p, _, v in whole if p == 1] == [f"p1-{n}".encode() for n in range(10)] + [b"p1-after"]
    assert len([v for p, _, v in whole if p == 0]) == 10
    assert read({(topic, 0): (5, 5)}) == []

    nobody = topic_reader("127.0.0.1:9", "no-broker", {"socket.connection.setup.timeout.ms": 1000})
    started = time.monotonic()
    with pytest.raises((TimeoutError, KafkaException)):
        list(read_ranges(nobody, {(topic, 0): (0, 10)}, timeout_s=2))
    nobody.close()
    assert time.monotonic() - started < 30
