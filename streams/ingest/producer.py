"""Producing usage to ``usage.events``: idempotent, ``acks=all``, one event per message or batches.

Every message is keyed by ``subscription_id`` and partitioned by Kafka's murmur2 (the Java
client's default), so a subscription's events land on the partition where the worker keeps its
state; the idempotent producer keeps them in the order they were sent. A batch message
(``UsageEventBatch``) holds events of one subscription only, as its schema says, so its key is
true for every event in it.

Delivery is confirmed per message: ``flush`` raises ``DeliveryError`` if any message failed or is
still unconfirmed, so a caller never believes unsent usage was recorded. It may then resend: the
events keep their idempotency keys, so the pipeline counts them once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import avro_codec
from streams.ingest.partitioning import PRODUCER_PARTITIONER
from streams.kafka import messages
from streams.kafka.security import check_authentication, client_config
from streams.kafka.topics import USAGE_EVENTS
from streams.kafka.topics import ensure_topics as ensure_topics  # its former home
from streams.operators.records import UsageEvent

MAX_MESSAGE_BYTES: Final = 1_000_000
"""The broker's default ``message.max.bytes``; a batch that would encode larger is split."""

TUNING: Final[dict[str, Any]] = {
    "enable.idempotence": True,  # no duplicates or reordering from the client's own retries
    "acks": "all",
    "partitioner": PRODUCER_PARTITIONER,
    "compression.type": "lz4",  # cheap on CPU; usage events (repeated ids, codes) compress well
    "linger.ms": 20,  # wait a little for full record batches: throughput over latency
    "batch.size": MAX_MESSAGE_BYTES,
    "message.max.bytes": MAX_MESSAGE_BYTES,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}


class DeliveryError(RuntimeError):
    """Some messages were not acknowledged by the brokers (failed, or unconfirmed at the timeout)."""

    def __init__(self, message: str, failed_events: int, unconfirmed_messages: int) -> None:
        super().__init__(message)
        self.failed_events = failed_events
        self.unconfirmed_messages = unconfirmed_messages


class UnknownTopicError(RuntimeError):
    """The topic does not exist (create it with ``streams.kafka.topics.ensure_topics``)."""


class UsageProducer:
    """Usage events onto a topic. ``batch_size`` 1 sends one ``UsageEvent`` per message; more
    gathers up to that many events of one subscription into a ``UsageEventBatch``.

    Not thread-safe: use one per thread (librdkafka batches across them anyway).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = USAGE_EVENTS,
        *,
        batch_size: int = 1,
        max_pending_events: int = 100_000,
        config: dict[str, Any] | None = None,
        metadata_timeout: float = 10.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.topic = topic
        self.batch_size = batch_size
        self.max_pending_events = max(max_pending_events, batch_size)
        self.producer = Producer(client_config(bootstrap_servers, TUNING, config or {}))
        # librdkafka would hold messages for an unknown topic until message.timeout.ms (5 minutes)
        # and then fail them all; say so now instead.
        try:
            found = self.producer.list_topics(topic, timeout=metadata_timeout).topics.get(topic)
        except KafkaException:
            check_authentication(self.producer)
            raise
        if found is None or found.error is not None or not found.partitions:
            reason = found.error if found is not None and found.error is not None else "no partitions"
            raise UnknownTopicError(f"topic {topic!r} is not available on {bootstrap_servers}: {reason}")
        self.partitions = len(found.partitions)
        self._pending: dict[str, list[UsageEvent]] = {}
        self._pending_events = 0
        self.sent_events = 0
        self.sent_messages = 0
        self.delivered_events = 0
        self.delivered_messages = 0
        self.failed_events = 0
        self.errors: list[KafkaError] = []
        self._reported_failures = 0

    def send(self, event: UsageEvent) -> None:
        """Queue one event: produced at once (``batch_size`` 1) or when its subscription's batch is
        full, when too many events are pending, or at ``flush``."""
        if self.batch_size == 1:
            self._produce([event])
            return
        pending = self._pending.setdefault(event.subscription_id, [])
        pending.append(event)
        self._pending_events += 1
        if len(pending) >= self.batch_size:
            self._produce(self._pending.pop(event.subscription_id))
            self._pending_events -= self.batch_size
        elif self._pending_events >= self.max_pending_events:
            self._produce_pending()

    def send_all(self, events: Iterable[UsageEvent]) -> int:
        """Queue every event; returns how many."""
        count = 0
        for event in events:
            self.send(event)
            count += 1
        return count

    def flush(self, timeout: float = 60.0) -> int:
        """Produce what is pending and wait for every delivery report; returns the events delivered
        so far. Raises ``DeliveryError`` if a message failed since the last flush or is still
        unconfirmed after ``timeout`` seconds."""
        self._produce_pending()
        unconfirmed = self.producer.flush(timeout)
        failed = self.failed_events - self._reported_failures
        self._reported_failures = self.failed_events
        if unconfirmed or failed:
            errors = ", ".join(str(e) for e in self.errors[-3:])
            raise DeliveryError(
                f"{failed} events failed, {unconfirmed} messages unconfirmed after {timeout}s"
                + (f" (last errors: {errors})" if errors else ""),
                failed,
                unconfirmed,
            )
        return self.delivered_events

    def __len__(self) -> int:
        """Events not yet confirmed by the brokers (pending here or in flight)."""
        return self._pending_events + self.sent_events - self.delivered_events - self.failed_events

    def _produce_pending(self) -> None:
        for events in self._pending.values():
            self._produce(events)
        self._pending.clear()
        self._pending_events = 0

    def _produce(self, events: Sequence[UsageEvent]) -> None:
        if len(events) == 1 and self.batch_size == 1:
            value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(events[0]))
        else:
            value = avro_codec.encode(
                messages.USAGE_EVENT_BATCH, {"events": [messages.usage_event_avro(e) for e in events]}
            )
            if len(value) > MAX_MESSAGE_BYTES - 1024 and len(events) > 1:  # room for the record overhead
                half = len(events) // 2
                self._produce(events[:half])
                self._produce(events[half:])
                return
        self._send(events[0].subscription_id.encode(), value, len(events))

    def _send(self, key: bytes, value: bytes, count: int) -> None:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                self.delivered_events += count
                self.delivered_messages += 1
            else:
                self.failed_events += count
                self.errors.append(error)

        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: serve delivery reports to drain it
                self.producer.poll(0.05)
            except KafkaException as error:
                raise DeliveryError(f"cannot produce a message of {count} events: {error}", count, 0) from error
        self.sent_events += count
        self.sent_messages += 1
        self.producer.poll(0)
