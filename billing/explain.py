"""``billing explain``: why is a subscription's usage what it is, for a window ``[from, to)``.

Reads the subscription's partition of ``usage.events`` and ``usage.dlq`` from Kafka, replays the
events through the same operators in memory, and sets the counts of every stage beside what the
usage store holds: received, duplicates, conflicts, invalid by reason, accepted, stored — and the
quantity each side gives. A difference between "expected" and "stored" names the stage to look at
(a sink behind, a worker behind, an event rejected).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from rating.aggregations import quantity
from streams.ingest.partitioning import partition_of
from streams.inprocess import InProcessPipeline
from streams.kafka import messages
from streams.kafka.security import client_config
from streams.kafka.topics import USAGE_DLQ, USAGE_EVENTS
from streams.memory import MemoryDeadLetters, MemoryUsageStore
from streams.operators.dedup import Verdict
from streams.operators.intervals import UsageQuery
from streams.operators.process import Catalog
from streams.operators.records import Rejection, UsageEvent
from streams.ports import UsageStore


@dataclass
class Explanation:
    received: int = 0
    duplicates: int = 0
    conflicts: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    expected_quantity: Decimal = Decimal(0)
    stored_events: int = 0
    stored_quantity: Decimal = Decimal(0)
    dead_letters: Counter[str] = field(default_factory=Counter)

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("received in window (usage.events)", f"{self.received:,}"),
            ("duplicates dropped", f"{self.duplicates:,}"),
            ("idempotency conflicts", f"{self.conflicts:,}"),
        ]
        rows += [(f"invalid: {reason}", f"{count:,}") for reason, count in sorted(self.invalid.items())]
        rows += [
            ("accepted (distinct, valid)", f"{self.accepted:,}"),
            ("expected quantity (replayed through the operators)", str(self.expected_quantity)),
            ("stored events (ClickHouse usage_events)", f"{self.stored_events:,}"),
            ("stored quantity (ClickHouse, exact [from, to))", str(self.stored_quantity)),
        ]
        rows += [(f"dead-lettered: {reason}", f"{count:,}") for reason, count in sorted(self.dead_letters.items())]
        return rows


def _read_partition(bootstrap: str, topic: str, partition: int) -> list[Any]:
    consumer = Consumer(client_config(bootstrap, {"group.id": "billing-explain", "enable.auto.commit": False}))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        consumer.assign([TopicPartition(topic, partition, low)])
        out: list[Any] = []
        while high > low and (not out or out[-1].offset() < high - 1):
            batch = consumer.consume(10_000, timeout=2.0)
            if not batch:
                break
            out += [m for m in batch if m.error() is None]
        return out
    finally:
        consumer.close()


def explain(
    bootstrap: str,
    catalog: Catalog,
    store: UsageStore,
    subscription_id: str,
    metric_code: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
) -> Explanation:
    metric = catalog.metric_of(metric_code)
    if metric is None:
        raise ValueError(f"metric_code: no metric {metric_code!r} in the catalog")
    consumer = Consumer(client_config(bootstrap, {"group.id": "billing-explain"}))
    partitions = len(consumer.list_topics(USAGE_EVENTS, timeout=10).topics[USAGE_EVENTS].partitions)
    consumer.close()
    partition = partition_of(subscription_id, partitions)
    result = Explanation()
    mine: list[UsageEvent] = []
    for message in _read_partition(bootstrap, USAGE_EVENTS, partition):
        for item in messages.read_usage(message.value()):
            if isinstance(item, Rejection):
                continue
            if item.subscription_id == subscription_id and item.metric_code == metric_code:
                mine.append(item)
    replay = MemoryUsageStore()
    pipeline = InProcessPipeline(catalog, replay, MemoryDeadLetters(), lambda: now_ms, tenant_of=lambda _: "")
    for event in mine:  # the whole history: a conflict's first write may lie outside the window
        outcome = pipeline.process(event)
        if not start_ms <= event.recorded_at_ms < end_ms:
            continue
        result.received += 1
        if outcome.rejection is not None and outcome.verdict is not Verdict.CONFLICT:
            result.invalid[str(outcome.rejection.reason)] += 1
        elif outcome.verdict is Verdict.CONFLICT:
            result.conflicts += 1
        elif outcome.verdict is Verdict.DUPLICATE:
            result.duplicates += 1
        else:
            result.accepted += 1
    pipeline.flush()
    query = [UsageQuery(subscription_id, metric_code, start_ms, end_ms)]
    [expected] = replay.totals(query)
    [stored] = store.totals(query)
    result.expected_quantity = quantity(metric.aggregation, expected, end_ms)
    result.stored_events = stored.event_count
    result.stored_quantity = quantity(metric.aggregation, stored, end_ms)
    seen: set[tuple[int, int, str]] = set()
    for message in _read_partition(bootstrap, USAGE_DLQ, partition):
        letter = messages.read_dead_letter(message.value())
        identity = (letter["source_partition"], letter["source_offset"], letter["field"] or "")
        if identity in seen:
            continue  # a redelivered rejection
        seen.add(identity)
        events = messages.read_usage(letter["original"])
        if any(
            isinstance(e, UsageEvent) and e.subscription_id == subscription_id and e.metric_code == metric_code
            for e in events
        ):
            result.dead_letters[letter["reason"]] += 1
    return result
