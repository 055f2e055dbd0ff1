"""The producer, the SDK and ``billing produce`` on the real broker: every event arrives once, keyed
by its subscription, on its subscription's partition, in order per subscription, one per message
or batched; the SDK refuses inexact input naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from billing.sdk import BillingClient
from rating.errors import InvalidValue
from streams.generate import generate
from streams.ingest.partitioning import partition_of
from streams.ingest.producer import UsageProducer
from streams.kafka import messages
from streams.operators.records import Rejection, UsageEvent

# The session's broker comes from tests/kafka_fixtures.py (through conftest.py); without that module
# there is no broker to run on. Importing the fixture here as well would start a second one.
pytest.importorskip("tests.kafka_fixtures")

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000
PARTITIONS = 3


def read_back(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> list[tuple[int, bytes, list[UsageEvent]]]:
    """Every message of ``topic``: (partition, key, decoded events), in partition order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[tuple[int, bytes, list[UsageEvent]]] = []
        while len(out) < sum(ends.values()):
            batch = consumer.consume(1000, timeout=5)
            assert batch, f"read {len(out)} of {sum(ends.values())} messages, then nothing"
            for message in batch:
                assert message.error() is None
                key, value = message.key(), message.value()
                assert key is not None and value is not None
                decoded = messages.read_usage(value)
                assert not any(isinstance(item, Rejection) for item in decoded), decoded
                partition = message.partition()
                assert partition is not None
                out.append((partition, key, [e for e in decoded if isinstance(e, UsageEvent)]))
        return out
    finally:
        consumer.close()


def per_subscription(events: list[UsageEvent]) -> dict[str, list[str]]:
    """repr, not equality: generated invalid events carry NaN, which equals nothing."""
    out: dict[str, list[str]] = defaultdict(list)
    for event in events:
        out[event.subscription_id].append(repr(event))
    return dict(out)


def check_arrival(sent: list[UsageEvent], got: list[tuple[int, bytes, list[UsageEvent]]], batch: int) -> None:
    for partition, key, events in got:
        assert 1 <= len(events) <= batch
        assert {e.subscription_id.encode() for e in events} == {key}  # a batch is one subscription's
        assert partition == partition_of(key.decode(), PARTITIONS)
    received = [e for _, _, events in got for e in events]
    assert per_subscription(received) == per_subscription(sent)  # same events, same order per subscription


@pytest.mark.parametrize("batch", [1, 25])
def test_every_event_arrives_once_keyed_on_its_partition_in_order(kafka_broker: Any, batch: int) -> None:
    topic = kafka_broker.new_topic("usage-producer", PARTITIONS)
    sent = [
        UsageEvent(f"e{n}", "t1", f"sub_{n % 7}", "calls", n / 4, BASE_MS + (n * 7919) % 1000, f"k{n}", {"n": str(n)})
        for n in range(500)
    ]
    producer = UsageProducer(kafka_broker.bootstrap, topic, batch_size=batch)
    assert producer.send_all(sent) == 500
    assert producer.flush() == 500
    got = read_back(kafka_broker.bootstrap, topic)
    check_arrival(sent, got, batch)
    assert producer.sent_messages == producer.delivered_messages == len(got)
    assert len(got) == (500 if batch == 1 else sum(-(-len(ids) // batch) for ids in per_subscription(sent).values()))
    assert producer.failed_events == 0 and len(producer) == 0


def test_generated_mess_arrives_as_generated(kafka_broker: Any) -> None:
    topic = kafka_broker.new_topic("usage-generated", PARTITIONS)
    sent = list(
        generate(
            3000,
            [f"sub_{n}" for n in range(40)],
            ["calls", "gb"],
            start_ms=BASE_MS,
            duplicate_rate=0.1,
            conflict_rate=0.05,
            out_of_order_rate=0.1,
            invalid_rate=0.05,
            seed=11,
        )
    )
    # A small pending limit makes the producer send part-full batches, as it must with many subscriptions.
    producer = UsageProducer(kafka_broker.bootstrap, topic, batch_size=50, max_pending_events=500)
    producer.send_all(sent)
    producer.flush()
    check_arrival(sent, read_back(kafka_broker.bootstrap, topic), 50)


def test_the_sdk_refuses_inexact_input_naming_the_field(kafka_broker: Any) -> None:
    topic = kafka_broker.new_topic("usage-sdk", PARTITIONS)
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    with BillingClient(kafka_broker.bootstrap, topic=topic) as client:
        refused: dict[str, list[Callable[[], None]]] = {
            "value": [
                lambda: client.record_usage("t1", "s1", "calls", 0.1, at, idempotency_key="k"),  # type: ignore[arg-type]
                lambda: client.record_usage("t1", "s1", "calls", Decimal("NaN"), at, idempotency_key="k"),
                lambda: client.record_usage("t1", "s1", "calls", Decimal("1e-13"), at, idempotency_key="k"),
            ],
            "idempotency_key": [lambda: client.record_usage("t1", "s1", "calls", 1, at, idempotency_key="")],
            "recorded_at": [
                lambda: client.record_usage("t1", "s1", "calls", 1, at.replace(tzinfo=None), idempotency_key="k")
            ],
            "subscription_id": [lambda: client.record_usage("t1", "", "calls", 1, at, idempotency_key="k")],
        }
        for field, calls in refused.items():
            for call in calls:
                with pytest.raises(InvalidValue) as error:
                    call()
                assert error.value.field == field
        with pytest.raises(InvalidValue, match="float") as error:
            client.record_usage("t1", "s1", "calls", 2.5, at, idempotency_key="k")  # type: ignore[arg-type]
        client.record_usage("t1", "s1", "calls", Decimal("2.50"), at, idempotency_key="k-ok", metadata={"r": "eu"})
    assert client.producer.delivered_events == 1
    [(_, key, [event])] = read_back(kafka_broker.bootstrap, topic)
    assert key == b"s1"
    assert event == UsageEvent("k-ok", "t1", "s1", "calls", 2.5, 1_767_323_045_678, "k-ok", {"r": "eu"})


def test_the_sdk_still_sends_what_was_recorded_before_an_exception(kafka_broker: Any) -> None:
    topic = kafka_broker.new_topic("usage-sdk-error", PARTITIONS)
    at = datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(KeyError), BillingClient(kafka_broker.bootstrap, batch_size=10, topic=topic) as client:
        client.record_usage("t1", "s1", "calls", 3, at, idempotency_key="k1")
        raise KeyError("the caller's own failure")
    assert [e.idempotency_key for _, _, events in read_back(kafka_broker.bootstrap, topic) for e in events] == ["k1"]


def billing_produce(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billing.cli", "produce", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "100"},
    )


def test_billing_produce_generates_with_a_summary(kafka_broker: Any) -> None:
    topic = f"usage-cli-{os.getpid()}"
    done = billing_produce(
        "--generate", "2000", "--subscriptions", "30", "--batch", "50", "--seed", "5", "--duplicates", "0.1",
        "--partitions", str(PARTITIONS), "--topic", topic, "--bootstrap", kafka_broker.bootstrap,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2,000 events in ") and "events/s" in done.stdout
    got = read_back(kafka_broker.bootstrap, topic)
    assert f"in {len(got):,} messages" in done.stdout
    subscriptions = [f"sub_{n:05d}" for n in range(30)]
    sent = list(generate(2000, subscriptions, ["api_calls"], start_ms=BASE_MS, duplicate_rate=0.1, seed=5))
    assert len(sent) == sum(len(events) for _, _, events in got)
    check_arrival(sent, got, 50)


def test_billing_produce_sends_a_json_lines_file_in_arrival_order(kafka_broker: Any, tmp_path: Path) -> None:
    topic = kafka_broker.new_topic("usage-cli-file", PARTITIONS)
    lines = [
        {"subscription_id": "s1", "metric_code": "calls", "value": 2, "recorded_at": "2026-01-01T10:00:00Z",
         "arrives_at": "2026-01-01T12:00:00Z", "idempotency_key": "late"},
        {"subscription_id": "s1", "metric_code": "calls", "value": "0.1", "recorded_at": "2026-01-01T11:00:00Z",
         "idempotency_key": "on-time", "metadata": {"user": "u1"}},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    done = billing_produce("--file", str(path), "--topic", topic, "--bootstrap", kafka_broker.bootstrap)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 events in 2 messages")
    [(_, _, [first]), (_, _, [second])] = read_back(kafka_broker.bootstrap, topic)
    assert (first.idempotency_key, first.value, first.metadata) == ("on-time", 0.1, {"user": "u1"})
    assert (second.idempotency_key, second.value) == ("late", 2.0)


def test_billing_produce_names_the_bad_field_of_a_file(tmp_path: Path, kafka_broker: Any) -> None:
    path = tmp_path / "events.yaml"
    path.write_text("- {subscription_id: s1, metric_code: calls, value: 1}\n", encoding="utf-8")
    done = billing_produce("--file", str(path), "--bootstrap", kafka_broker.bootstrap)
    assert done.returncode != 0
    assert "events[0].recorded_at" in done.stderr
