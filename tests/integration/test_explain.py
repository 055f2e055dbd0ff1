"""``billing explain`` counts each stage for a subscription's window from the real topics."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from billing.explain import explain
from rating.catalog import Metric
from schemas import avro_codec
from streams.ingest.partitioning import partition_of
from streams.kafka import messages
from streams.kafka.topics import USAGE_DLQ, USAGE_EVENTS
from streams.memory import MemoryUsageStore
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000


def test_explain_counts_every_stage(kafka_broker: Any) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(t, 2, 1) for t in (USAGE_EVENTS, USAGE_DLQ) if t not in existing]
    for future in admin.create_topics(new).values() if new else ():
        future.result()
    sub = f"sub_{uuid.uuid4().hex[:6]}"
    partitions = len(admin.list_topics(USAGE_EVENTS, timeout=10).topics[USAGE_EVENTS].partitions)
    events = [UsageEvent(f"e{n}", "t1", sub, "calls", 2.0, BASE_MS + n * 60_000, f"k{n}", {}) for n in range(5)]
    events += [events[0], UsageEvent("c", "t1", sub, "calls", 9.0, BASE_MS, "k1", {})]  # a duplicate, a conflict
    events += [UsageEvent("x", "t1", sub, "calls", -1.0, BASE_MS, "neg", {})]  # invalid
    events += [UsageEvent("late", "t1", sub, "calls", 7.0, BASE_MS + 86_400_000, "k9", {})]  # outside the window
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for event in events:
        value = avro_codec.encode("usage_event.v2", messages.usage_event_avro(event))
        producer.produce(USAGE_EVENTS, key=sub.encode(), value=value, partition=partition_of(sub, partitions))
    producer.flush(10)
    catalog = Catalog({"calls": Metric("calls")}.get, {sub: SubscriptionRef(sub, "t1")}.get)
    result = explain(
        kafka_broker.bootstrap, catalog, MemoryUsageStore(), sub, "calls", BASE_MS, BASE_MS + 3_600_000, BASE_MS * 2
    )
    assert (result.received, result.duplicates, result.conflicts, result.accepted) == (8, 1, 1, 5)
    assert result.invalid == {"negative_value": 1}
    assert result.expected_quantity == 10
    assert (result.stored_events, result.stored_quantity) == (0, 0)  # no sink ran: the store is behind
