"""``billing serve``'s Kafka side: ``IngestUsage`` through the SDK's checks and producer
(``billing.sdk.usage_event``, ``UsageProducer``) onto ``usage.events``, so an event accepted over
the API is exactly one the SDK would have sent. One producer per RPC thread (the producer is not
thread-safe); librdkafka batches across them anyway."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from confluent_kafka import KafkaException

from billing.api.ingest import BrokerUnavailable, UsageInput
from billing.sdk import usage_event
from rating.errors import InvalidValue
from streams.ingest.producer import DeliveryError, UnknownTopicError, UsageProducer
from streams.kafka.security import KafkaAuthenticationFailed, KafkaSecurityError
from streams.kafka.topics import USAGE_EVENTS

BATCH = 500
"""Events of one subscription per ``UsageEventBatch`` message."""


def usage_topic(topic_prefix: str = "") -> str:
    """The ``usage.events`` of a loop run with ``--topic-prefix topic_prefix``."""
    return topic_prefix + USAGE_EVENTS


class KafkaRecorder:
    def __init__(self, bootstrap_servers: str, topic: str = USAGE_EVENTS, timeout: float = 30.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout = timeout
        self.local = threading.local()

    def _producer(self) -> UsageProducer:
        producer: UsageProducer | None = getattr(self.local, "producer", None)
        if producer is None:
            try:
                producer = UsageProducer(self.bootstrap_servers, self.topic, batch_size=BATCH, metadata_timeout=5.0)
            except (KafkaException, UnknownTopicError, KafkaAuthenticationFailed, KafkaSecurityError) as error:
                raise BrokerUnavailable(f"Kafka at {self.bootstrap_servers}: {error}") from None
            self.local.producer = producer
        return producer

    def record(self, events: Sequence[UsageInput]) -> int:
        checked = []
        for event in events:
            try:
                checked.append(
                    usage_event(
                        event.tenant_id,
                        event.subscription_id,
                        event.metric_code,
                        event.value,
                        event.recorded_at,
                        idempotency_key=event.idempotency_key,
                        metadata=event.metadata,
                        event_id=event.event_id,
                    )
                )
            except InvalidValue as error:
                raise error.at(event.field) from None
        producer = self._producer()
        try:
            producer.send_all(checked)
            producer.flush(self.timeout)
        except (DeliveryError, KafkaException, BufferError) as error:
            raise BrokerUnavailable(f"Kafka at {self.bootstrap_servers} did not acknowledge them: {error}") from None
        return len(checked)
