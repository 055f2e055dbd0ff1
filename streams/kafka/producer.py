"""Producing usage to ``usage.events``: idempotent, ``acks=all``, one event per message or batches.

Every event goes to the partition its subscription hashes to (Kafka's murmur2), where the worker
keeps that subscription's state; a batch message holds events of one partition only. Delivery is
confirmed per message: ``flush`` raises if any message failed, so a caller never believes
unsent usage was recorded (it may resend: the same idempotency keys make that harmless).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from schemas import avro_codec
from streams.kafka import messages
from streams.kafka.partitioning import PRODUCER_PARTITIONER, partition_of
from streams.kafka.worker import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS, USAGE_WINDOWS
from streams.operators.records import UsageEvent


class DeliveryError(RuntimeError):
    """Some messages were not acknowledged by the brokers."""


class UsageProducer:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        batch_size: int = 1,
        topic: str = USAGE_EVENTS,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.batch_size = batch_size
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": PRODUCER_PARTITIONER,
                "linger.ms": 10,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
                **(config or {}),
            }
        )
        self.partitions = len(self.producer.list_topics(topic, timeout=10).topics[topic].partitions)
        self._pending: dict[int, list[UsageEvent]] = defaultdict(list)
        self.delivered = 0
        self.failed: list[KafkaError] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed.append(error)
        else:
            self.delivered += 1

    def _send(self, partition: int, value: bytes, key: bytes) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic, value=value, key=key, partition=partition, on_delivery=self._on_delivery
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.05)
        self.producer.poll(0)

    def send(self, event: UsageEvent) -> None:
        """Queue one event; sent at once (``batch_size`` 1) or when its partition's batch is full."""
        partition = partition_of(event.subscription_id, self.partitions)
        if self.batch_size <= 1:
            value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(event))
            self._send(partition, value, event.subscription_id.encode())
            return
        pending = self._pending[partition]
        pending.append(event)
        if len(pending) >= self.batch_size:
            self._send_batch(partition)

    def _send_batch(self, partition: int) -> None:
        events = self._pending.pop(partition, [])
        if events:
            value = avro_codec.encode(
                messages.USAGE_EVENT_BATCH, {"events": [messages.usage_event_avro(e) for e in events]}
            )
            self._send(partition, value, events[0].subscription_id.encode())

    def send_all(self, events: Iterable[UsageEvent]) -> int:
        count = 0
        for event in events:
            self.send(event)
            count += 1
        return count

    def flush(self, timeout: float = 60.0) -> None:
        for partition in list(self._pending):
            self._send_batch(partition)
        left = self.producer.flush(timeout)
        if left or self.failed:
            raise DeliveryError(f"{left} messages still queued, {len(self.failed)} failed: {self.failed[:3]}")


def ensure_topics(bootstrap_servers: str, partitions: int, replication: int = 1) -> list[str]:
    """Create the pipeline's topics where missing (``replication`` 3 on a real cluster); returns
    those created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = admin.list_topics(timeout=10).topics
    wanted = [
        NewTopic(t, partitions, replication)
        for t in (USAGE_EVENTS, USAGE_DLQ, USAGE_ACCEPTED, USAGE_WINDOWS)
        if t not in existing
    ]
    if not wanted:
        return []
    for future in admin.create_topics(wanted).values():
        future.result()
    return [t.topic for t in wanted]
