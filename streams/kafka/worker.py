"""``billing worker``: the Faust app that runs the shared operators on ``usage.events``.

Exactness comes from this design, not from Faust's exactly-once mode (design section 7):

* at-least-once delivery: Faust flushes the producer (state changelogs and outputs) before it
  commits an offset, so everything a committed message caused is durable;
* dedup entries remember (partition, position) of the message that first carried an identity, so
  a redelivered message is a REPLAY, not a duplicate;
* every window remembers the last source position it counted (``WindowAccumulator.position``),
  so after a crash each window re-counts exactly the redelivered events its persisted snapshot
  missed, whatever subset of the changelog writes survived;
* outputs are absolute, versioned window totals and raw records keyed by identity, so the sink
  may write any of them twice.

The catalog (metrics per tenant, subscriptions) comes from the compacted ``catalog.terms`` and
``catalog.subscriptions`` topics (streams/kafka/catalog_tables.py), or from a scenario file
offline. An event whose subscription or metric is unknown is dead-lettered only after the catalog
has caught up with those topics' end offsets taken after the event was read (once per batch), so
a lagging catalog never rejects an event whose subscription was committed before it.

State lives in two Faust tables (``dedup``, ``windows``) whose changelog partition is the source
partition, written once per batch. Faust picks a table's partition (and a RocksDB store its
column family) from the *current event*, so every table access below runs with the current event
set to a message of the right partition.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import faust
from confluent_kafka import Consumer, TopicPartition
from faust.streams import _current_event
from faust.types import EventT

from streams.kafka import messages
from streams.kafka.catalog_tables import CatalogLagging, CatalogTables
from streams.kafka.metrics import WorkerMetrics
from streams.kafka.partitioning import partition_of
from streams.kafka.topics import USAGE_ACCEPTED as USAGE_ACCEPTED  # re-exported: older imports name the worker
from streams.kafka.topics import USAGE_DLQ as USAGE_DLQ
from streams.kafka.topics import USAGE_EVENTS as USAGE_EVENTS
from streams.kafka.topics import USAGE_WINDOWS as USAGE_WINDOWS
from streams.operators.dedup import DedupEntry, Verdict
from streams.operators.process import Catalog, process_event
from streams.operators.records import Reason, Rejection, UsageRecord
from streams.operators.windows import BUCKET_MS, POSITIONS_PER_OFFSET, WindowAccumulator, WindowKey
from streams.ports import DeadLetter, WindowRow

log = logging.getLogger("billing.worker")
Event = EventT[Any]


@dataclass(frozen=True)
class WorkerSettings:
    bootstrap_servers: str
    partitions: int
    app_id: str = "billing-usage"
    store: str = "memory://"
    """``rocksdb://`` in production (state survives restarts locally; the changelog rebuilds it
    elsewhere), ``memory://`` in tests (state is rebuilt from the changelog on every start)."""
    data_dir: str = ".data/worker"
    batch_max: int = 2000
    batch_within_s: float = 0.05
    commit_interval_s: float = 1.0
    session_timeout_s: float = 10.0
    dedup_retention_ms: int = 40 * 86_400_000
    """Dedup entries older than this (by event time) are purged: a period is closed and
    invoiced long before; a later copy of such an event is late usage, handled downstream."""
    purge_interval_s: float = 600.0
    metrics_port: int | None = None
    group_instance_id: str | None = None
    topic_prefix: str = ""
    """Prepended to every topic name (``usage.events`` …): separate pipelines on one cluster."""
    catalog_refresh_s: float = 1.0
    """How often new catalog records are applied while the worker runs (with catalog topics);
    exactness does not rest on it: an unknown subscription or metric triggers a catch-up first."""

    def topic(self, name: str) -> str:
        return self.topic_prefix + name


@contextmanager
def _as_current(event: Event) -> Iterator[None]:
    """Make ``event`` Faust's current event: tables take their changelog partition from it."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def _dedup_to_json(entry: DedupEntry, recorded_at_ms: int) -> list[Any]:
    return [entry.fingerprint, entry.partition, entry.position, recorded_at_ms]


class BatchState(MutableMapping[Any, Any]):
    """A table as the operators' mapping: reads fall through a cache of decoded values (coherent,
    since this worker is the only writer of its partitions); writes are remembered and flushed to
    the table once per batch."""

    def __init__(
        self,
        table: Any,
        decode: Callable[[Any], Any],
        cache: dict[Any, Any],
        table_key: Callable[[Any], Any] = str,
    ) -> None:
        self.table = table
        self.decode = decode
        self.cache = cache
        self.table_key = table_key
        self.dirty: dict[Any, Event] = {}
        self.event: Event | None = None

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.cache[key]
        except KeyError:
            raw = self.table.get(self.table_key(key))
            if raw is None:
                raise
            value = self.cache[key] = self.decode(raw)
            return value

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        self.cache[key] = value
        self.touch(key)

    def touch(self, key: Any) -> None:
        assert self.event is not None
        self.dirty[key] = self.event

    def __delitem__(self, key: Any) -> None:
        raise NotImplementedError("the operators never delete state")

    def __iter__(self) -> Iterator[Any]:
        return iter(self.cache)

    def __len__(self) -> int:
        return len(self.cache)


def window_table_key(key: WindowKey) -> str:
    return f"{key.subscription_id}\x1f{key.metric_code}\x1f{key.granularity}\x1f{key.start_ms}"


@dataclass
class UsageWorker:
    """The agent's body, apart from Faust's plumbing so it reads top to bottom."""

    app: faust.App
    settings: WorkerSettings
    catalog: Catalog
    now_ms: Callable[[], int]
    metrics: WorkerMetrics
    catalog_tables: CatalogTables | None = None
    """The catalog topics behind ``catalog`` (None: a fixed catalog from a scenario file)."""
    dedup_cache: dict[str, Any] = field(default_factory=dict)
    window_cache: dict[WindowKey, WindowAccumulator] = field(default_factory=dict)
    processed: dict[int, int] = field(default_factory=dict)
    watermark: dict[int, int] = field(default_factory=dict)
    last_event: dict[int, Event] = field(default_factory=dict)
    next_purge: float = 0.0

    def __post_init__(self) -> None:
        s = self.settings

        def raw_topic(name: str) -> faust.TopicT:
            return self.app.topic(
                name,
                partitions=s.partitions,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
            )

        self.source = raw_topic(s.topic(USAGE_EVENTS))
        self.dlq = raw_topic(s.topic(USAGE_DLQ))
        self.accepted = raw_topic(s.topic(USAGE_ACCEPTED))
        self.windows_out = raw_topic(s.topic(USAGE_WINDOWS))
        self.dedup_table = self.app.Table("dedup", partitions=s.partitions, key_type=str, value_type=None)
        self.window_table = self.app.Table("windows", partitions=s.partitions, key_type=str, value_type=None)

    def forget_cache(self) -> None:
        """After a rebalance another worker may have written our former partitions. New mappings,
        not cleared ones: a batch in flight (waiting on a send or a catalog catch-up when the
        revocation arrives) keeps its own consistent view to the end."""
        self.dedup_cache = {}
        self.window_cache = {}
        self.last_event = {}

    def unknown_to_catalog(self, rejection: Rejection | None) -> bool:
        """Whether ``rejection`` may only mean the catalog tables have not caught up yet."""
        return (
            self.catalog_tables is not None
            and rejection is not None
            and rejection.reason in (Reason.UNKNOWN_SUBSCRIPTION, Reason.UNKNOWN_METRIC)
        )

    async def catch_up_catalog(self) -> None:
        assert self.catalog_tables is not None
        started = time.perf_counter()
        try:
            applied = await self.catalog_tables.catch_up_async()
        except CatalogLagging as error:
            # Deciding now could dead-letter a known subscription; a crashed Faust agent would hang
            # the worker instead of stopping it. Restart: nothing of this batch is acknowledged.
            log.error("%s; restarting from the last commit", error)
            self.restart()
        log.info(
            "catalog caught up before rejecting an unknown: %d records in %.3fs", applied, time.perf_counter() - started
        )

    def check_contiguous(self, events: Sequence[Event]) -> None:
        """Restart from the last commit if a message went missing in flight.

        Faust can drop messages it had fetched into a ``take`` buffer when a rebalance interrupts
        the stream, and then go on from the next offset: found by the fault test (one message of
        a batch skipped at a rebalance). On a partition without transactions offsets are
        contiguous, so a jump past a message that exists means it was lost. Nothing of this batch
        is acknowledged yet, so re-executing the worker resumes at or before the lost message."""
        for event in events:
            partition, offset = event.message.partition, event.message.offset
            last = self.processed.get(partition)
            if last is not None and offset > last + 1 and self.exists(partition, last + 1):
                log.error(
                    "usage.events[%d] offsets %d..%d were skipped in flight; restarting from the last commit",
                    partition,
                    last + 1,
                    offset - 1,
                )
                self.restart()
            self.processed[partition] = offset

    def exists(self, partition: int, offset: int) -> bool:
        """Whether ``offset`` holds a message (not a transaction marker or a compacted hole)."""
        consumer = Consumer({"bootstrap.servers": self.settings.bootstrap_servers, "group.id": "billing-usage-probe"})
        try:
            consumer.assign([TopicPartition(self.settings.topic(USAGE_EVENTS), partition, offset)])
            message = consumer.poll(10)
            return message is not None and message.error() is None and message.offset() == offset
        finally:
            consumer.close()

    def restart(self) -> NoReturn:
        """Replace this process with a fresh worker (same pid and arguments); an abrupt exit, like a
        crash, which the design makes harmless."""
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    async def process(self, events: Sequence[Event]) -> None:
        self.check_contiguous(events)
        started = time.perf_counter()
        now = self.now_ms()
        horizon = now - self.settings.dedup_retention_ms
        dedup = BatchState(self.dedup_table, lambda raw: DedupEntry(raw[0], raw[1], raw[2]), self.dedup_cache)
        windows = BatchState(self.window_table, WindowAccumulator.from_state, self.window_cache, window_table_key)
        recorded_at: dict[str, int] = {}
        records: list[tuple[int, UsageRecord, float]] = []
        changed: dict[WindowKey, tuple[int, int, str, float]] = {}
        letters: list[tuple[DeadLetter, bytes | None]] = []
        counts: Counter[str] = Counter()
        caught_up = False  # a catch-up after this batch was fetched covers all of its events
        for event in events:
            message = event.message
            partition, offset = message.partition, message.offset
            dedup.event = windows.event = event
            items = messages.read_usage(message.value)
            produced_at = message.timestamp  # carried to the outputs: the sink measures event-to-queryable
            batch = len(items) > 1
            with _as_current(event):
                for index, item in enumerate(items):
                    if (
                        not isinstance(item, Rejection)
                        and partition_of(item.subscription_id, self.settings.partitions) != partition
                    ):
                        item = Rejection(
                            Reason.WRONG_PARTITION,
                            f"subscription {item.subscription_id!r} is partitioned to "
                            f"{partition_of(item.subscription_id, self.settings.partitions)}, not {partition}",
                            "subscription_id",
                            item.subscription_id,
                            item.idempotency_key,
                        )
                    if isinstance(item, Rejection):
                        letters.append((self._letter(item, message, index if batch else None), message.key))
                        counts["invalid"] += 1
                        continue
                    position = offset * POSITIONS_PER_OFFSET + index
                    outcome = process_event(
                        item,
                        self.catalog,
                        dedup,
                        windows,
                        now,
                        partition=partition,
                        position=position,
                        oldest_ms=horizon,
                    )
                    if not caught_up and self.unknown_to_catalog(outcome.rejection):
                        await self.catch_up_catalog()  # validation rejected before any state changed
                        caught_up = True
                        outcome = process_event(
                            item,
                            self.catalog,
                            dedup,
                            windows,
                            now,
                            partition=partition,
                            position=position,
                            oldest_ms=horizon,
                        )
                    if outcome.rejection is not None:
                        letters.append(
                            (self._letter(outcome.rejection, message, index if batch else None), message.key)
                        )
                        counts["conflict" if outcome.verdict is Verdict.CONFLICT else "invalid"] += 1
                        continue
                    counts[str(outcome.verdict)] += 1
                    if outcome.verdict is Verdict.DUPLICATE:
                        continue
                    assert outcome.record is not None
                    record = outcome.record
                    recorded_at[f"{record.subscription_id}\x1f{record.idempotency_key}"] = record.recorded_at_ms
                    records.append((partition, record, produced_at))
                    if record.recorded_at_ms < self.watermark.get(partition, 0) - BUCKET_MS:
                        counts["late"] += 1
                    self.watermark[partition] = max(self.watermark.get(partition, 0), record.recorded_at_ms)
                    tenant = record.tenant_id
                    for key, end in outcome.changed:
                        windows.touch(key)
                        changed[key] = (partition, end, tenant, produced_at)
            self.last_event[partition] = event
        # State first, then outputs: both are flushed before Faust commits these offsets.
        for key, event in dedup.dirty.items():
            with _as_current(event):
                entry = dedup.cache[key]
                self.dedup_table[key] = _dedup_to_json(entry, recorded_at.get(key, 0))
        for wkey, event in windows.dirty.items():
            with _as_current(event):
                self.window_table[window_table_key(wkey)] = windows.cache[wkey].to_state()
        for partition, record, produced_at in records:
            await self.accepted.send(
                key=record.subscription_id.encode(),
                value=messages.write_record(record),
                partition=partition,
                timestamp=produced_at,
            )
        for wkey, (partition, end, tenant, produced_at) in changed.items():
            acc = windows.cache[wkey]
            row = WindowRow(wkey, tenant, end, acc.version, acc.totals())
            await self.windows_out.send(
                key=wkey.subscription_id.encode(),
                value=messages.write_window(row),
                partition=partition,
                timestamp=produced_at,
            )
        for letter, original_key in letters:
            value = messages.write_dead_letter(letter, now, original_key)
            await self.dlq.send(key=original_key, value=value, partition=letter.source_partition)
        self.metrics.observe_batch(counts, len(events), time.perf_counter() - started)
        if time.monotonic() >= self.next_purge:
            self.next_purge = time.monotonic() + self.settings.purge_interval_s
            self.purge_dedup(now)

    def purge_dedup(self, now_ms: int) -> int:
        """Forget identities and windows older than the retention (by event time), so state stays
        bounded; their totals are in ClickHouse already."""
        horizon = now_ms - self.settings.dedup_retention_ms
        expired = [(self.dedup_table, key, raw[1]) for key, raw in self.dedup_table.items() if raw[3] < horizon]
        partitions = self.settings.partitions
        for key in list(self.window_table.keys()):
            subscription_id, *_, start = key.split("\x1f")
            if int(start) < horizon - 32 * 86_400_000:  # a month window ends at most 31 days after it starts
                expired.append((self.window_table, key, partition_of(subscription_id, partitions)))
        purged = 0
        for table, key, partition in expired:
            event = self.last_event.get(partition)
            if event is None:
                continue  # not ours any more, or nothing seen yet: its owner purges it
            with _as_current(event):
                del table[key]
            purged += 1
        self.forget_cache()
        if purged:
            log.info("purged %d state entries older than %d", purged, horizon)
        return purged

    def _letter(self, rejection: Rejection, message: Any, index: int | None) -> DeadLetter:
        if index is not None:
            where = f"events[{index}]" + (f".{rejection.field}" if rejection.field else "")
            rejection = Rejection(
                rejection.reason, rejection.detail, where, rejection.subscription_id, rejection.idempotency_key
            )
        return DeadLetter(rejection, message.value or b"", message.topic, message.partition, message.offset)

    def report_lag(self) -> None:
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.settings.topic(USAGE_EVENTS):
                continue
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.metrics.lag.labels(partition=str(tp.partition)).set(
                    max(0, highwater - 1 - self.processed.get(tp.partition, -1))
                )


def create_app(
    settings: WorkerSettings,
    catalog: Catalog,
    now_ms: Callable[[], int],
    catalog_tables: CatalogTables | None = None,
) -> tuple[faust.App, UsageWorker]:
    """The Faust app with its one agent (concurrency 1: faust issue 606) and its tables; with
    ``catalog_tables`` (already caught up), a timer applies new catalog records as they come."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.group_instance_id,
        producer_acks=-1,
        producer_linger_ms=5,
        web_enabled=False,
        table_standby_replicas=0,
    )
    worker = UsageWorker(app, settings, catalog, now_ms, WorkerMetrics(), catalog_tables)

    @app.agent(worker.source, concurrency=1)
    async def usage(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            await worker.process(events)

    async def lag() -> None:
        worker.report_lag()

    app.timer(interval=5.0)(lag)

    if catalog_tables is not None:
        tables = catalog_tables

        async def refresh_catalog() -> None:
            applied = tables.refresh()
            if applied:
                log.info("catalog: %d new records", applied)

        app.timer(interval=settings.catalog_refresh_s)(refresh_catalog)

    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:  # faust's signal protocol
        worker.forget_cache()

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    return app, worker
