"""``billing sink``: window totals and accepted records from Kafka into the usage store.

One process owns an embedded chDB store; with a ClickHouse server any number may run. Offsets are
committed only after the store has the batch, so a crash replays at most the last batch, and the
store's writes are idempotent (absolute versioned windows, records keyed by identity, a
deterministic insert token), so a replay changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from streams.kafka import messages
from streams.kafka.consumers import group_consumer, record_messages, run_until_stopped
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_WINDOWS
from streams.metrics import SinkMetrics
from streams.operators.records import UsageRecord
from streams.operators.windows import WindowKey
from streams.ports import UsageStore, WindowRow

log = logging.getLogger("billing.sink")


@dataclass(frozen=True)
class SinkSettings:
    bootstrap_servers: str
    group_id: str = ""
    """The consumer group; empty: ``topic_prefix`` + ``billing-sink``, so that two prefixed
    pipelines on one cluster never share a sink's group."""
    batch_max: int = 20_000
    batch_wait_s: float = 0.2
    metrics_port: int | None = None
    topic_prefix: str = ""
    """The worker's ``topic_prefix``."""


def newest_versions(rows: list[WindowRow]) -> list[WindowRow]:
    """One row per window: the highest version in the batch (the store would discard the rest)."""
    newest: dict[WindowKey, WindowRow] = {}
    for row in rows:
        seen = newest.get(row.key)
        if seen is None or row.version >= seen.version:
            newest[row.key] = row
    return list(newest.values())


class UsageSink:
    def __init__(
        self,
        settings: SinkSettings,
        store: UsageStore,
        metrics: SinkMetrics | None = None,
        on_written: Callable[[list[UsageRecord], list[WindowRow]], None] | None = None,
        *,
        now_ms: Callable[[], int],
    ) -> None:
        """``on_written`` sees each batch once it is in the store (the rating side reacts to it);
        ``now_ms`` is the wall clock that Kafka's message timestamps are compared with."""
        self.settings = settings
        self.store = store
        self.metrics = metrics or SinkMetrics()
        self.on_written = on_written
        self.now_ms = now_ms
        self.consumer = group_consumer(
            settings.bootstrap_servers, settings.group_id or settings.topic_prefix + "billing-sink"
        )
        self.accepted_topic = settings.topic_prefix + USAGE_ACCEPTED
        self.consumer.subscribe([self.accepted_topic, settings.topic_prefix + USAGE_WINDOWS])

    def run_once(self) -> int:
        """Consume one batch, write it, commit; returns the number of messages handled."""
        batch = self.consumer.consume(num_messages=self.settings.batch_max, timeout=self.settings.batch_wait_s)
        if not batch:
            return 0
        started = time.perf_counter()
        records: list[UsageRecord] = []
        rows: list[WindowRow] = []
        produced_at_ms: list[int] = []
        for message in record_messages(batch):
            value = message.value()
            if value is None:
                continue
            if message.topic() == self.accepted_topic:
                records.append(messages.read_record(value))
            else:
                rows.append(messages.read_window(value))
                kind, stamp = message.timestamp()
                if kind != 0:
                    produced_at_ms.append(stamp)
        newest = newest_versions(rows)
        self.store.write(records, newest)
        if self.on_written is not None:
            self.on_written(records, newest)
        self.consumer.commit(asynchronous=False)
        written_ms = self.now_ms()
        for stamp in produced_at_ms:
            self.metrics.event_to_queryable.observe(max(0.0, (written_ms - stamp) / 1000))
        self.metrics.rows.labels(table="usage_events").inc(len(records))
        self.metrics.rows.labels(table="usage_windows").inc(len(rows))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return len(batch)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        run_until_stopped(self, should_stop)

    def close(self) -> None:
        self.consumer.close()
