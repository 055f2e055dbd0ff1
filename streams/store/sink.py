"""``billing sink``: window totals and accepted records from Kafka into the usage store.

Both arrive as Arrow batches (``window_batch``, ``usage_record_batch``), inserted as they are, or
as single rows of older workers (``window_total``, ``usage_record``). One process owns an
embedded chDB store; with a ClickHouse server any number may run. Offsets are committed only
after the store has the batch, so a crash replays at most the last batch, and the store's writes
are idempotent (absolute versioned windows, records keyed by identity, a deterministic insert
token), so a replay changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from streams.clickhouse.columns import PRODUCED_AT, event_records
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
        on_written: Callable[[list[UsageRecord], set[str]], None] | None = None,
        *,
        now_ms: Callable[[], int],
    ) -> None:
        """``on_written`` sees each batch once it is in the store: its accepted records and the
        subscriptions whose buckets it wrote (the rating side reacts to them); ``now_ms`` is the
        wall clock that the rows' produced-at stamps are compared with."""
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
        """Consume one batch, write it, commit; returns the number of messages handled.

        ``usage.accepted`` holds ``usage_record_batch`` messages (Arrow columns, inserted as
        they are; a record stored before is stored once) and, from workers before them, one
        ``usage_record`` per message. ``usage.windows`` holds ``window_batch`` messages (Arrow
        columns, inserted as they are: older versions of a bucket among them are harmless, the
        store keeps the highest) and, from workers before them, one ``window_total`` row per
        message (the newest version of each bucket in the batch is written). A topic may hold
        both shapes during an upgrade."""
        batch = self.consumer.consume(num_messages=self.settings.batch_max, timeout=self.settings.batch_wait_s)
        if not batch:
            return 0
        started = time.perf_counter()
        records: list[UsageRecord] = []
        accepted: list[pa.Table] = []
        rows: list[WindowRow] = []
        tables: list[pa.Table] = []
        produced_at_ms: list[int] = []
        for message in record_messages(batch):
            value = message.value()
            if value is None:
                continue
            if message.topic() == self.accepted_topic:
                if messages.is_record_batch(value):
                    accepted.append(messages.read_record_batch(value))
                else:
                    records.append(messages.read_record(value))
            elif messages.is_window_batch(value):
                tables.append(messages.read_window_batch(value))
            else:
                rows.append(messages.read_window(value))
                kind, stamp = message.timestamp()
                if kind != 0:
                    produced_at_ms.append(stamp)
        newest = newest_versions(rows)
        self.store.write(records, newest)
        events = pa.concat_tables(accepted) if accepted else None
        if events is not None:
            self.store.write_event_table(events)
        table = pa.concat_tables(tables) if tables else None
        if table is not None:
            self.store.write_window_table(messages.without_stamps(table))
        if self.on_written is not None:
            if events is not None:
                records.extend(event_records(events))  # only for a listener: the rater
            touched = {row.key.subscription_id for row in newest}
            if table is not None:
                touched.update(pc.unique(table.column("subscription_id")).to_pylist())
            self.on_written(records, touched)
        self.consumer.commit(asynchronous=False)
        written_ms = self.now_ms()
        self._observe_latency(written_ms, produced_at_ms, table)
        self.metrics.rows.labels(table="usage_events").inc(len(records) + (0 if events is None else events.num_rows))
        self.metrics.rows.labels(table="usage_windows").inc(len(rows) + (0 if table is None else table.num_rows))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return len(batch)

    def _observe_latency(self, written_ms: int, stamps: list[int], table: pa.Table | None) -> None:
        """Event→queryable per window row: from its produced-at stamp (a batch row's column, a single
        row's Kafka timestamp) to now. Rows of one source message share a stamp: one observation
        per distinct stamp and row, without a Python value per row."""
        for stamp in stamps:
            self.metrics.event_to_queryable.observe(max(0.0, (written_ms - stamp) / 1000))
        if table is None:
            return
        counts = pc.value_counts(table.column(PRODUCED_AT).drop_null().cast(pa.int64()))
        for stamp, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
            seconds = max(0.0, (written_ms - stamp) / 1000)
            for _ in range(count):
                self.metrics.event_to_queryable.observe(seconds)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        run_until_stopped(self, should_stop)

    def close(self) -> None:
        self.consumer.close()
