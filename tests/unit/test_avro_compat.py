"""Old and new producers and consumers of ``usage.events`` interoperate, at the level of whole
messages as this project's producer writes and its worker reads them (the schema-level cases are
in test_schemas_avro.py): a v1 producer's single events and batches reach today's consumer, and
today's producer's messages reach a consumer that only knows the v1 schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import avro_codec
from streams.kafka import messages
from streams.operators.records import UsageEvent

pytestmark = pytest.mark.unit

AT_MS = 1_767_225_600_123
EVENTS = [
    UsageEvent(f"e{n}", "t1", "sub_1", "api_calls", n / 10, AT_MS + n, f"k{n}", {"user": f"u{n}"} if n % 2 else {})
    for n in range(5)
]


def v1_record(event: UsageEvent) -> dict[str, Any]:
    """What a producer built against usage_event.v1 writes: no ``source`` field."""
    return {
        "id": event.id,
        "tenant_id": event.tenant_id,
        "subscription_id": event.subscription_id,
        "metric_code": event.metric_code,
        "value": event.value,
        "recorded_at": event.recorded_at_ms,
        "idempotency_key": event.idempotency_key,
        "metadata": dict(event.metadata),
    }


def v1_consumer(data: bytes) -> list[dict[str, Any]]:
    """A consumer that knows only usage_event.v1 and usage_event_batch.v1."""
    if avro_codec.writer_schema_of(data).startswith("usage_event_batch."):
        return list(avro_codec.decode("usage_event_batch.v1", data)["events"])
    return [avro_codec.decode("usage_event.v1", data)]


def as_v1(event: UsageEvent) -> dict[str, Any]:
    return {**v1_record(event), "recorded_at": datetime.fromtimestamp(event.recorded_at_ms / 1000, UTC)}


def test_old_producer_single_event_reaches_the_new_consumer() -> None:
    data = avro_codec.encode("usage_event.v1", v1_record(EVENTS[1]))
    assert messages.read_usage(data) == [EVENTS[1]]


def test_old_producer_batch_reaches_the_new_consumer_in_order() -> None:
    data = avro_codec.encode("usage_event_batch.v1", {"events": [v1_record(e) for e in EVENTS]})
    assert messages.read_usage(data) == EVENTS


def test_new_producer_single_event_reaches_an_old_consumer() -> None:
    data = avro_codec.encode(messages.USAGE_EVENT, {**messages.usage_event_avro(EVENTS[3]), "source": "sdk"})
    assert avro_codec.writer_schema_of(data) == "usage_event.v2"
    assert v1_consumer(data) == [as_v1(EVENTS[3])]


def test_new_producer_batch_reaches_an_old_consumer() -> None:
    data = avro_codec.encode(messages.USAGE_EVENT_BATCH, {"events": [messages.usage_event_avro(e) for e in EVENTS]})
    assert v1_consumer(data) == [as_v1(e) for e in EVENTS]


def test_new_producer_messages_round_trip_through_the_new_consumer() -> None:
    single = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(EVENTS[0]))
    batch = avro_codec.encode(messages.USAGE_EVENT_BATCH, {"events": [messages.usage_event_avro(e) for e in EVENTS]})
    assert messages.read_usage(single) == EVENTS[:1]
    assert messages.read_usage(batch) == EVENTS
