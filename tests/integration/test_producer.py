"""The producer, the SDK and ``billing produce`` on the real broker: every event arrives once, on
its subscription's partition, in order per subscription, one per message or batched."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from billing.sdk import BillingClient
from rating.errors import InvalidValue
from streams.kafka import messages
from streams.kafka.partitioning import partition_of
from streams.kafka.producer import UsageProducer
from streams.operators.records import UsageEvent

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000


def topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"usage-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result()
    return name


def read(bootstrap: str, name: str, partitions: int = 3) -> list[tuple[int, list[Any]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": name, "enable.auto.commit": False})
    ends = [consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in range(partitions)]
    consumer.assign([TopicPartition(name, p, 0) for p in range(partitions)])
    out: list[tuple[int, list[Any]]] = []
    while sum(1 for _ in out) < sum(ends):
        for message in consumer.consume(1000, timeout=2):
            assert message.error() is None
            out.append((message.partition(), messages.read_usage(message.value())))
    consumer.close()
    return out


@pytest.mark.parametrize("batch", [1, 25])
def test_every_event_arrives_once_on_its_partition_in_order(kafka_broker: Any, batch: int) -> None:
    name = topic(kafka_broker.bootstrap)
    events = [UsageEvent(f"e{n}", "t1", f"sub_{n % 7}", "calls", n / 4, BASE_MS + n, f"k{n}", {}) for n in range(500)]
    producer = UsageProducer(kafka_broker.bootstrap, batch_size=batch, topic=name)
    producer.send_all(events)
    producer.flush()
    got = read(kafka_broker.bootstrap, name)
    received = [event for _, batch_events in got for event in batch_events]
    assert sorted(received, key=lambda e: e.id) == sorted(events, key=lambda e: e.id)
    assert all(partition_of(e.subscription_id, 3) == p for p, batch_events in got for e in batch_events)
    by_subscription: dict[str, list[str]] = defaultdict(list)
    for _, batch_events in got:
        for event in batch_events:
            by_subscription[event.subscription_id].append(event.id)
    for sub, ids in by_subscription.items():
        assert ids == [e.id for e in events if e.subscription_id == sub]
    assert max(len(b) for _, b in got) == (1 if batch == 1 else 25)


def test_the_sdk_refuses_inexact_input_naming_the_field(kafka_broker: Any) -> None:
    topic(kafka_broker.bootstrap)  # the SDK writes to usage.events; make sure the broker is up
    at = datetime(2026, 1, 2, tzinfo=UTC)
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    if "usage.events" not in admin.list_topics(timeout=10).topics:
        for future in admin.create_topics([NewTopic("usage.events", 2, 1)]).values():
            future.result()
    with BillingClient(kafka_broker.bootstrap) as client:
        with pytest.raises(InvalidValue) as error:
            client.record_usage("t1", "s1", "calls", 0.1, at, idempotency_key="k")  # type: ignore[arg-type]
        assert error.value.field == "value"
        with pytest.raises(InvalidValue) as error:
            client.record_usage("t1", "s1", "calls", Decimal(1), at, idempotency_key="")
        assert error.value.field == "idempotency_key"
        with pytest.raises(InvalidValue) as error:
            client.record_usage("t1", "s1", "calls", Decimal(1), at.replace(tzinfo=None), idempotency_key="k")
        assert error.value.field == "recorded_at"
        client.record_usage("t1", "s1", "calls", Decimal("2.5"), at, idempotency_key="k-ok")
    assert client.producer.delivered == 1


def test_billing_produce_generates_with_a_summary(kafka_broker: Any) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "billing.cli",
            "produce",
            "--generate",
            "2000",
            "--batch",
            "50",
            "--partitions",
            "2",
            "--bootstrap",
            kafka_broker.bootstrap,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "2,000 events" in done.stderr
