"""``billing dlq`` on the real broker: the dead-letter topics keep letters a year (the broker's
default was 7 days), ``list`` filters letters written by ``messages.write_dead_letter``, and
``replay`` re-produces exactly the selected originals, keyed onto their subscription's partition,
where dedup makes a second replay change nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]
from confluent_kafka.cimpl import NewTopic

from billing.cli import main
from rating.catalog import Metric
from schemas import avro_codec
from streams.ingest.partitioning import partition_of
from streams.inprocess import InProcessPipeline
from streams.kafka import messages
from streams.kafka.topics import RATING_DLQ, RATING_RESULTS, USAGE_DLQ, USAGE_EVENTS, ensure_topics
from streams.memory import MemoryDeadLetters, MemoryUsageStore
from streams.operators.process import Catalog
from streams.operators.records import Reason, Rejection, UsageEvent
from streams.operators.validate import SubscriptionRef
from streams.ports import DeadLetter
from tests.waiting import wait_until

pytest.importorskip("tests.kafka_fixtures")

pytestmark = pytest.mark.integration

PARTITIONS = 2
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z
YEAR_MS = 365 * DAY_MS


@pytest.fixture
def prefix() -> str:
    return f"dlq-{uuid.uuid4().hex[:8]}."


def retention(bootstrap: str, *topics: str) -> dict[str, int]:
    """The topics' ``retention.ms``, once the broker describes them (a topic created a moment
    ago may not be known to every part of the broker yet)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]

    def described() -> dict[str, int] | None:
        try:
            configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return None
        return {name: int(config["retention.ms"].value) for name, config in configs.items()}

    return wait_until(described, 30, f"the broker to describe {list(topics)}", interval=0.2)


def test_dead_letter_topics_are_created_keeping_letters_a_year(kafka_broker: Any, prefix: str) -> None:
    """Before: created with the broker's default (7 days), letters expired before anyone replayed them."""
    names = [prefix + t for t in (USAGE_EVENTS, USAGE_DLQ, RATING_RESULTS, RATING_DLQ)]
    ensure_topics(kafka_broker.bootstrap, PARTITIONS, topics=names)
    kept = retention(kafka_broker.bootstrap, *names)
    assert kept[prefix + USAGE_DLQ] == kept[prefix + RATING_DLQ] == YEAR_MS
    assert kept[prefix + USAGE_EVENTS] != YEAR_MS  # usage keeps the broker's default (7 days in ops/kafka.py)


def test_a_shorter_retention_is_raised_never_lowered_and_the_cli_sets_it(
    kafka_broker: Any, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = kafka_broker.bootstrap
    usage_dlq, rating_dlq = prefix + USAGE_DLQ, prefix + RATING_DLQ
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = [
        NewTopic(usage_dlq, PARTITIONS, 1, config={"retention.ms": str(7 * DAY_MS)}),
        NewTopic(rating_dlq, PARTITIONS, 1, config={"retention.ms": "-1"}),  # an operator chose forever
    ]
    for future in admin.create_topics(existing, operation_timeout=30).values():
        future.result()
    retention(bootstrap, usage_dlq, rating_dlq)  # known everywhere, so ensure_topics finds them
    assert ensure_topics(bootstrap, PARTITIONS, topics=[usage_dlq, rating_dlq]) == []
    assert retention(bootstrap, usage_dlq, rating_dlq) == {usage_dlq: YEAR_MS, rating_dlq: -1}
    ensure_topics(bootstrap, PARTITIONS, topics=[usage_dlq], dlq_retention_ms=2 * YEAR_MS)
    ensure_topics(bootstrap, PARTITIONS, topics=[usage_dlq])  # a restart with the default: not lowered
    assert retention(bootstrap, usage_dlq) == {usage_dlq: 2 * YEAR_MS}

    assert main(["dlq", "retention", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--days", "30"]) == 0
    assert retention(bootstrap, usage_dlq, rating_dlq) == {usage_dlq: 30 * DAY_MS, rating_dlq: 30 * DAY_MS}
    assert capsys.readouterr().out.splitlines() == [f"{usage_dlq}: 30 days", f"{rating_dlq}: 30 days"]
    other = f"dlq-{uuid.uuid4().hex[:8]}."
    assert main(["dlq", "retention", "--bootstrap", bootstrap, "--topic-prefix", other]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(f"{other}usage.dlq: absent")


def usage_bytes(sub: str, key: str, value: float = 1.0, batch: int = 1) -> bytes:
    events = [UsageEvent(f"{key}-{n}", "t1", sub, "calls", value, T0, f"{key}-{n}", {}) for n in range(batch)]
    if batch == 1:
        return avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(events[0]))
    return avro_codec.encode(messages.USAGE_EVENT_BATCH, {"events": [messages.usage_event_avro(e) for e in events]})


LETTERS = [
    # (subscription, reason, field, hours after T0, source offset, original)
    ("sub_a", Reason.UNKNOWN_SUBSCRIPTION, "subscription_id", 0, 10, usage_bytes("sub_a", "a1")),
    ("sub_b", Reason.UNKNOWN_METRIC, "metric_code", 1, 11, usage_bytes("sub_b", "b1")),
    ("sub_b", Reason.UNKNOWN_SUBSCRIPTION, "subscription_id", 2, 12, usage_bytes("sub_b", "b2")),
    # one batch message rejected for two of its events: two letters, one original
    ("sub_c", Reason.NEGATIVE_VALUE, "events[0].value", 3, 13, usage_bytes("sub_c", "c", -1.0, batch=2)),
    ("sub_c", Reason.NEGATIVE_VALUE, "events[1].value", 3, 13, usage_bytes("sub_c", "c", -1.0, batch=2)),
]


@pytest.fixture
def pipeline(kafka_broker: Any, prefix: str) -> Iterator[str]:
    """Fresh pipeline topics under ``prefix`` with the dead letters of ``LETTERS`` and one
    ``rating.dlq`` letter, written as the worker and the invoicer write them."""
    bootstrap = kafka_broker.bootstrap
    ensure_topics(
        bootstrap, PARTITIONS, topics=[prefix + t for t in (USAGE_EVENTS, USAGE_DLQ, RATING_RESULTS, RATING_DLQ)]
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    for sub, reason, field, hours, source_offset, original in LETTERS:
        source = partition_of(sub, PARTITIONS)
        letter = DeadLetter(
            Rejection(reason, f"{reason} in {sub}", field), original, prefix + USAGE_EVENTS, source, source_offset
        )
        value = messages.write_dead_letter(letter, T0 + hours * HOUR_MS, sub.encode())
        producer.produce(prefix + USAGE_DLQ, value, key=sub.encode(), partition=source)
    rating = DeadLetter(
        Rejection(Reason.UNDECODABLE, "not invoiceable"), b"rating-result-bytes", prefix + RATING_RESULTS, 0, 5
    )
    producer.produce(prefix + RATING_DLQ, messages.write_dead_letter(rating, T0, b"sub_r"), key=b"sub_r", partition=0)
    assert producer.flush(30) == 0
    yield bootstrap


def dlq(capsys: pytest.CaptureFixture[str], bootstrap: str, prefix: str, *args: str) -> tuple[int, str, str]:
    status = main(["dlq", *args, "--bootstrap", bootstrap, "--topic-prefix", prefix])
    out, err = capsys.readouterr()
    return status, out, err


def listed(capsys: pytest.CaptureFixture[str], bootstrap: str, prefix: str, *args: str) -> list[dict[str, Any]]:
    status, out, err = dlq(capsys, bootstrap, prefix, "list", "--json", *args)
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_list_filters_dead_letters(pipeline: str, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = pipeline
    every = listed(capsys, bootstrap, prefix)
    assert [(x["subscription_id"], x["reason"], x["field"]) for x in every] == [
        (sub, str(reason), field) for sub, reason, field, *_ in LETTERS
    ]
    first = every[0]
    assert first["timestamp"] == "2026-03-01T00:00:00Z"
    assert first["topic"] == prefix + USAGE_DLQ and first["partition"] == partition_of("sub_a", PARTITIONS)
    assert (first["source_topic"], first["source_partition"], first["source_offset"]) == (
        prefix + USAGE_EVENTS,
        partition_of("sub_a", PARTITIONS),
        10,
    )
    assert first["detail"] == "unknown_subscription in sub_a" and first["original_key"] == "sub_a"

    def subs_reasons(*args: str) -> list[tuple[str, str]]:
        return [(x["subscription_id"], x["reason"]) for x in listed(capsys, bootstrap, prefix, *args)]

    assert subs_reasons("--reason", "unknown_subscription") == [
        ("sub_a", "unknown_subscription"),
        ("sub_b", "unknown_subscription"),
    ]
    assert subs_reasons("--reason", "unknown_metric,negative_value", "--subscription", "sub_b") == [
        ("sub_b", "unknown_metric")
    ]
    assert subs_reasons("--since", "2026-03-01T01:00:00Z", "--until", "2026-03-01T03:00:00Z") == [
        ("sub_b", "unknown_metric"),
        ("sub_b", "unknown_subscription"),
    ]
    assert [x["field"] for x in listed(capsys, bootstrap, prefix, "--limit", "1")] == ["events[1].value"]
    offset = f"{every[1]['partition']}:{every[1]['offset']}"
    assert subs_reasons("--offset", offset) == [("sub_b", "unknown_metric")]
    status, out, err = dlq(capsys, bootstrap, prefix, "list", "--reason", "typo")
    assert (status, out) == (0, "")  # no empty table: the reasons there are, on stderr
    assert "reasons present: negative_value (2), unknown_metric (1), unknown_subscription (2)" in err
    [rating] = listed(capsys, bootstrap, prefix, "--topic", "rating")
    assert (rating["subscription_id"], rating["reason"], rating["source_offset"]) == ("sub_r", "undecodable", 5)

    status, table, err = dlq(capsys, bootstrap, prefix, "list", "--subscription", "sub_b")
    assert status == 0, err
    assert "unknown_metric" in table and "unknown_subscription" in table and "sub_a" not in table
    assert "metric_code" in table and f"{partition_of('sub_b', PARTITIONS)}@11" in table
    assert f"2 of 5 dead letters in {prefix}usage.dlq" in err


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every message of ``topic``: (partition, key, value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out: list[tuple[int, bytes | None, bytes]] = []
        while len(out) < sum(ends.values()):
            batch = consumer.consume(1000, timeout=5)
            assert batch, f"read {len(out)} of {sum(ends.values())} messages, then nothing"
            out += [(int(m.partition() or 0), m.key(), m.value() or b"") for m in batch if m.error() is None]
        return sorted(out)
    finally:
        consumer.close()


def test_replay_reinjects_exactly_the_selected_originals(
    pipeline: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap, events = pipeline, prefix + USAGE_EVENTS
    status, out, err = dlq(capsys, bootstrap, prefix, "replay", "--reason", "unknown_subscription", "--dry-run")
    assert status == 0, err
    assert out.count("would replay") == 2 and "would replay 2 messages" in err
    assert read_topic(bootstrap, events) == []

    status, out, err = dlq(capsys, bootstrap, prefix, "replay", "--reason", "unknown_subscription", "--json")
    assert status == 0, err
    assert [(x["subscription_id"], x["topic"]) for x in map(json.loads, out.splitlines())] == [
        ("sub_a", events),
        ("sub_b", events),
    ]
    expected = sorted(
        (partition_of(sub, PARTITIONS), sub.encode(), original)
        for sub, reason, *_, original in LETTERS
        if reason is Reason.UNKNOWN_SUBSCRIPTION
    )
    assert read_topic(bootstrap, events) == expected  # byte for byte, keyed on the subscription's partition

    # the batch rejected for two events goes back once
    status, out, err = dlq(capsys, bootstrap, prefix, "replay", "--subscription", "sub_c")
    assert status == 0, err
    assert "replayed 1 messages (2 of 5 letters" in err
    batch = LETTERS[3][-1]
    assert read_topic(bootstrap, events) == sorted([*expected, (partition_of("sub_c", PARTITIONS), b"sub_c", batch)])

    status, out, err = dlq(capsys, bootstrap, prefix, "replay", "--topic", "rating", "--all")
    assert status == 0, err
    assert read_topic(bootstrap, prefix + RATING_RESULTS) == [
        (partition_of("sub_r", PARTITIONS), b"sub_r", b"rating-result-bytes")
    ]


def test_replaying_twice_changes_nothing(pipeline: str, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    """After the fix (the subscriptions are known now) the replayed events are accepted once: the
    second replay's copies are duplicates of the same dedup identities."""
    bootstrap = pipeline
    for _ in range(2):
        status, _out, err = dlq(capsys, bootstrap, prefix, "replay", "--reason", "unknown_subscription")
        assert status == 0, err
    arrived = read_topic(bootstrap, prefix + USAGE_EVENTS)
    assert len(arrived) == 4
    subscriptions = {s: SubscriptionRef(s, "t1") for s in ("sub_a", "sub_b")}
    fixed = Catalog({"calls": Metric("calls")}.get, subscriptions.get)
    store = MemoryUsageStore()
    run = InProcessPipeline(fixed, store, MemoryDeadLetters(), lambda: T0 + DAY_MS, tenant_of=lambda _: "t1")
    stats = run.run(e for _p, _k, value in arrived for e in messages.read_usage(value) if isinstance(e, UsageEvent))
    assert (stats.accepted, stats.duplicates, stats.rejected) == (2, 2, 0)
