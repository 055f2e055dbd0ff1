"""The project's broker is a real Kafka 4.x: a produce and consume round trip with confluent-kafka
(idempotent, acks=all) and with aiokafka, the client Faust drives."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.integration


def new_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"roundtrip-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep it alive until the futures resolve
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result()
    return name


def test_confluent_kafka_round_trip(kafka_broker: Any) -> None:
    topic = new_topic(kafka_broker.bootstrap)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True, "acks": "all"})
    for n in range(100):
        producer.produce(topic, key=f"sub_{n % 7}".encode(), value=f"event {n}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": kafka_broker.bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    for _ in range(60):
        got += [m.value() for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        if len(got) == 100:
            break
    consumer.close()
    assert sorted(got) == sorted(f"event {n}".encode() for n in range(100))


def test_aiokafka_round_trip(kafka_broker: Any) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = new_topic(kafka_broker.bootstrap, 1)

    async def round_trip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=True)
        await producer.start()
        for n in range(20):
            await producer.send_and_wait(topic, f"m{n}".encode(), key=b"k")
        await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=10_000, max_records=20)
            return [record.value for records in batch.values() for record in records]
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == [f"m{n}".encode() for n in range(20)]
