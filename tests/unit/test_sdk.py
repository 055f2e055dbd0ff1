"""The SDK refuses what the pipeline would dead-letter, naming the field, before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.sdk import BillingClient
from rating.errors import InvalidValue
from streams.operators.records import UsageEvent

pytestmark = pytest.mark.unit

AT = datetime(2026, 1, 2, tzinfo=UTC)


class Recorder:
    """Stands in for the Kafka producer (tests/integration/test_producer.py runs the real one)."""

    def __init__(self) -> None:
        self.sent: list[UsageEvent] = []

    def send(self, event: UsageEvent) -> None:
        self.sent.append(event)

    def flush(self, timeout: float = 60.0) -> None:
        pass


@pytest.fixture
def client() -> Iterator[BillingClient]:
    billing = BillingClient.__new__(BillingClient)
    recorder = Recorder()
    billing.producer = recorder  # type: ignore[assignment]
    yield billing
    assert recorder.sent == []  # every call of these tests is refused before anything is sent


def test_text_at_the_limits_is_sent(client: BillingClient) -> None:
    metadata = {f"{n:064d}": "é" * 1024 for n in range(32)}
    client.record_usage("t" * 128, "s" * 128, "c" * 128, 1, AT, idempotency_key="k" * 256, metadata=metadata)
    recorder: Any = client.producer
    [event] = recorder.sent
    assert event.idempotency_key == event.id == "k" * 256 and event.metadata == metadata
    recorder.sent.clear()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tenant_id": "t" * 129}, "tenant_id"),
        ({"tenant_id": "t\x00"}, "tenant_id"),
        ({"subscription_id": "s" * 10_000_000}, "subscription_id"),
        ({"metric_code": "calls\x1b"}, "metric_code"),
        ({"idempotency_key": "k" * 257}, "idempotency_key"),
        ({"event_id": "e" * 257}, "event_id"),
        ({"metadata": {f"k{n}": "v" for n in range(33)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 1025}}, "metadata"),
        ({"metadata": {"k": "\x00"}}, "metadata"),
    ],
)
def test_the_sdk_refuses_text_beyond_the_limits(client: BillingClient, changes: dict[str, Any], field: str) -> None:
    call: dict[str, Any] = {
        "tenant_id": "t1",
        "subscription_id": "s1",
        "metric_code": "calls",
        "value": 1,
        "recorded_at": AT,
        "idempotency_key": "k1",
    }
    call.update(changes)
    with pytest.raises(InvalidValue) as caught:
        client.record_usage(**call)
    assert caught.value.field == field
    assert len(str(caught.value)) < 200
