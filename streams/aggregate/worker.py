"""``billing worker``'s batch step: the shared operators on a batch of ``usage.events`` (app.py wires it into Faust).

Faust is the agent framework (consumer group, batches of events); the state and the outputs are
ours, because what a committed offset implies must be durable before the commit, whatever Faust's
buffers do (docs/decisions/0001-usage-worker-state-in-kafka-transactions.md). A batch is made
durable per source partition, in these steps:

1. load the partition on first sight: fence its previous owner (``init_transactions`` of the
   partition's transactional id), then restore its state (local checkpoint, changelog tail);
2. skip messages below the partition's progress marker (already in a committed transaction) and
   read any gap above it straight from Kafka (messages Faust dropped or committed too early);
3. run each message through the operators (validate → dedup → windows) against that state;
4. in ONE Kafka transaction: the accepted records and the changed bucket totals (a few
   ``usage_record_batch`` and ``window_batch`` messages of Arrow columns per chunk), the dead
   letters, the changed state entries and the new progress marker; commit it. A partition's part
   of a batch is cut into chunks of about ``commit_events`` events, each its own transaction, handed
   to the partition's own commit thread while the next chunk is processed: the partition's
   transactions commit one after another, in order, and once one fails none after it begins;
5. only then (every chunk committed) return the batch to Faust, which acknowledges and later
   commits its offsets;
6. write the local checkpoint (``--store rocksdb``), never ahead of the committed changelog.

A crash anywhere before step 4's commit leaves nothing visible (readers are read_committed) and
the messages are read again; after it, the marker makes the redelivery a no-op. The state in
memory runs ahead of the commits in flight, which is harmless: any failure restarts the process
from what Kafka holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import faust
from faust.types import EventT

from streams.aggregate.settings import WorkerSettings
from streams.aggregate.usage_state import (
    LocalCheckpoint,
    Output,
    PartitionState,
    PartitionWriter,
    SourceTopicChanged,
    kill_point,
    read_changelog,
    read_source,
    state_topic,
    topic_id,
)
from streams.ingest.partitioning import partition_of
from streams.kafka import messages
from streams.kafka.catalog_tables import CatalogLagging, CatalogTables
from streams.kafka.topics import USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS, USAGE_WINDOWS
from streams.metrics import WorkerMetrics
from streams.operators.dedup import Verdict, dedup_key
from streams.operators.process import Catalog, process_event
from streams.operators.records import Reason, Rejection, UsageEvent, UsageRecord
from streams.operators.windows import BUCKET_MS, POSITIONS_PER_OFFSET, WindowKey, WindowSpan
from streams.ports import DeadLetter, WindowRow

log = logging.getLogger("billing.worker")
Event = EventT[Any]


class SourceMessage(NamedTuple):
    """One ``usage.events`` message, as Faust or a gap read delivered it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None


def _source_message(event: Event) -> SourceMessage:
    message = event.message
    timestamp = message.timestamp
    return SourceMessage(
        message.partition,
        message.offset,
        message.key,
        message.value,
        None if not timestamp else int(timestamp * 1000),
    )


@dataclass
class BatchOutputs:
    """What one partition's part of a batch writes, besides its state changes."""

    events: int = 0
    """Events of the messages processed into these outputs (what ``commit_events`` counts)."""
    records: list[UsageRecord] = field(default_factory=list)
    """Accepted records, in order: one ``usage_record_batch`` message per chunk (or a few)."""
    newest_accepted: int | None = None
    """The newest Kafka timestamp of the source messages of ``records``: their messages' timestamp."""
    windows: dict[WindowKey, tuple[str, tuple[WindowSpan, ...], int | None]] = field(default_factory=dict)
    """Changed buckets: tenant, the bucket's and its roll-ups' spans, newest source timestamp."""
    letters: list[Output] = field(default_factory=list)


@dataclass
class OwnedPartition:
    state: PartitionState
    writer: PartitionWriter
    checkpoint: LocalCheckpoint | None
    committer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "usage-commit"))
    """One thread: the partition's transactions run one after another, in the order handed over."""
    failed: bool = False
    """A transaction of this partition failed: no later one may begin (its marker would skip the
    failed one's messages)."""

    def close(self) -> None:
        self.committer.shutdown(wait=True)
        self.writer.close()
        if self.checkpoint is not None:
            self.checkpoint.close()


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
    owned: dict[int, OwnedPartition] = field(default_factory=dict)
    watermark: dict[int, int] = field(default_factory=dict)
    next_purge: float = 0.0
    source_topic_id: str = ""
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        s = self.settings
        self.source = self.app.topic(
            s.topic(USAGE_EVENTS),
            partitions=s.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.state_topic = state_topic(s.app_id)

    # -- partitions -------------------------------------------------------------------------------

    def assigned(self) -> set[int]:
        source = self.settings.topic(USAGE_EVENTS)
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == source}

    def load_partition(self, partition: int) -> OwnedPartition:
        """Step 1: fence the previous owner, then restore (runs in a thread: it blocks)."""
        s = self.settings
        started = time.perf_counter()
        if not self.source_topic_id:
            self.source_topic_id = topic_id(s.kafka, s.topic(USAGE_EVENTS))
        writer = PartitionWriter(s.kafka, s.app_id, self.state_topic, partition)
        state = PartitionState(partition)
        checkpoint = None
        start = 0
        if s.store == "rocksdb":
            checkpoint = LocalCheckpoint(Path(s.data_dir) / "state" / f"{self.state_topic}-{partition}")
            start = checkpoint.load(state) + 1
        applied = []
        last = -1
        for offset, record in read_changelog(s.kafka, self.state_topic, partition, start):
            if offset < start:  # the local checkpoint is from another topic of the same name
                break
            state.apply(*record)
            applied.append(record)
            last = offset
            if len(applied) == 1000:
                kill_point("restoring")
        if state.source_topic_id and state.source_topic_id != self.source_topic_id:
            raise SourceTopicChanged(
                f"{self.state_topic}[{partition}] holds state of {s.topic(USAGE_EVENTS)} with topic id "
                f"{state.source_topic_id}, but that topic now has id {self.source_topic_id}: it was deleted and "
                f"created again, so the offsets no longer match. Delete {self.state_topic} (and the --data-dir "
                "state) to start counting afresh, or point the worker at the original topic."
            )
        state.source_topic_id = self.source_topic_id
        if checkpoint is not None and last >= 0:
            checkpoint.save(applied, last)
        log.info(
            "usage.events[%d]: state restored (%d dedup entries, %d windows, next offset %d; "
            "%d changelog records read from %d) in %.2fs",
            partition,
            len(state.dedup),
            len(state.windows),
            state.next_offset,
            len(applied),
            start,
            time.perf_counter() - started,
        )
        return OwnedPartition(state, writer, checkpoint)

    async def on_revoked(self, partitions: Iterable[int]) -> None:
        """Hand revoked partitions over cleanly: the batch in flight commits first."""
        async with self.busy:
            for partition in partitions:
                owned = self.owned.pop(partition, None)
                if owned is not None:
                    owned.close()

    # -- a batch ----------------------------------------------------------------------------------

    async def process(self, events: Sequence[Event]) -> None:
        async with self.busy:
            try:
                await self._process([_source_message(event) for event in events])
            except SourceTopicChanged as error:
                log.critical("%s", error)
                logging.shutdown()
                os._exit(2)  # restarting cannot help: an operator must decide
            except Exception:
                # Whatever failed, nothing of this batch is committed in Kafka: start over from the
                # markers rather than let Faust acknowledge messages whose effects are not durable.
                log.exception("batch failed; restarting from the last committed state")
                self.restart()

    async def _process(self, batch: list[SourceMessage]) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        by_partition: dict[int, list[SourceMessage]] = {}
        for message in batch:
            by_partition.setdefault(message.partition, []).append(message)
        assigned = self.assigned()
        new = [p for p in by_partition if p not in self.owned and p in assigned]
        loaded = await asyncio.gather(*(loop.run_in_executor(None, self.load_partition, p) for p in new))
        self.owned.update(zip(new, loaded, strict=True))
        now = self.now_ms()
        counts: Counter[str] = Counter()
        purge = time.monotonic() >= self.next_purge
        if purge:
            self.next_purge = time.monotonic() + self.settings.purge_interval_s
        handed: list[asyncio.Future[None]] = []
        for partition, arrived in sorted(by_partition.items()):
            owned = self.owned.get(partition)
            if owned is None:
                continue  # revoked before we saw it: its new owner reads these messages
            state = owned.state
            outputs = BatchOutputs()
            committed_offset = state.next_offset
            for message in await self.in_order(state, arrived, counts):
                outputs.events += await self.process_message(state, message, now, outputs, counts)
                state.next_offset = message.offset + 1
                if outputs.events >= self.settings.commit_events:
                    handed.append(self.hand_over(owned, outputs, now))
                    outputs, committed_offset = BatchOutputs(), state.next_offset
            if purge:
                purged = state.purge(now - self.settings.dedup_retention_ms)
                if purged:
                    log.info("usage.events[%d]: purged %d state entries", partition, purged)
            if state.next_offset != committed_offset or state.purged:
                handed.append(self.hand_over(owned, outputs, now))
        await asyncio.gather(*handed)
        self.metrics.observe_batch(counts, len(batch), time.perf_counter() - started)

    def hand_over(self, owned: OwnedPartition, out: BatchOutputs, now: int) -> asyncio.Future[None]:
        """Step 4 for one chunk: its outputs and state changes go to the partition's commit thread."""
        outputs, changelog = self.outputs(owned.state, out, now), owned.state.changelog()
        return asyncio.get_running_loop().run_in_executor(owned.committer, self.commit, owned, outputs, changelog)

    async def in_order(
        self, state: PartitionState, arrived: list[SourceMessage], counts: Counter[str]
    ) -> list[SourceMessage]:
        """Step 2: the messages from the partition's marker on, each once and none missing."""
        out: list[SourceMessage] = []
        expected = state.next_offset
        redelivered = 0
        for message in sorted(arrived, key=lambda m: m.offset):
            if message.offset < expected:
                redelivered += 1  # its transaction committed: a no-op
                continue
            if message.offset > expected:
                gap = await asyncio.get_running_loop().run_in_executor(
                    None, self.read_gap, state.partition, expected, message.offset
                )
                if gap:
                    log.warning(
                        "usage.events[%d]: offsets %d..%d were not delivered; read %d messages from Kafka",
                        state.partition,
                        expected,
                        message.offset - 1,
                        len(gap),
                    )
                    counts["gap_filled"] += len(gap)
                out.extend(gap)
            out.append(message)
            expected = message.offset + 1
        if redelivered:
            counts["redelivered"] += redelivered
            log.info(
                "usage.events[%d]: %d redelivered messages skipped, below the committed marker %d",
                state.partition,
                redelivered,
                state.next_offset,
            )
        return out

    def read_gap(self, partition: int, start: int, end: int) -> list[SourceMessage]:
        topic = self.settings.topic(USAGE_EVENTS)
        return [
            SourceMessage(partition, offset, key, value, timestamp)
            for offset, key, value, timestamp in read_source(self.settings.kafka, topic, partition, start, end)
        ]

    async def process_message(
        self, state: PartitionState, message: SourceMessage, now: int, out: BatchOutputs, counts: Counter[str]
    ) -> int:
        """Step 3 for one message (one event or a batch of them); returns its number of events."""
        items = messages.read_usage(message.value)
        batch = len(items) > 1
        if len(items) > POSITIONS_PER_OFFSET:
            rejection = Rejection(
                Reason.BATCH_TOO_LARGE,
                f"a message may carry at most {POSITIONS_PER_OFFSET} events; this one has {len(items)}",
                "events",
            )
            self.reject(out, rejection, message, None, None, now)
            counts["invalid"] += len(items)
            return len(items)
        horizon = now - self.settings.dedup_retention_ms
        caught_up = False  # a catch-up after this message was fetched covers all of its events
        for index, item in enumerate(items):
            event_index = index if batch else None
            if not isinstance(item, Rejection):
                owner = partition_of(item.subscription_id, self.settings.partitions)
                if owner != message.partition:
                    item = Rejection(
                        Reason.WRONG_PARTITION,
                        f"subscription {item.subscription_id!r} is partitioned to {owner}, not {message.partition}",
                        "subscription_id",
                        item.subscription_id,
                        item.idempotency_key,
                    )
            if isinstance(item, Rejection):
                self.reject(out, item, message, event_index, None, now)
                counts["invalid"] += 1
                continue
            position = message.offset * POSITIONS_PER_OFFSET + index

            def run(event: UsageEvent = item, position: int = position) -> Any:
                return process_event(
                    event,
                    self.catalog,
                    state.dedup,
                    state.windows,
                    now,
                    partition=message.partition,
                    position=position,
                    oldest_ms=horizon,
                )

            outcome = run()
            if not caught_up and self.unknown_to_catalog(outcome.rejection):
                await self.catch_up_catalog()  # validation rejected before any state changed
                caught_up = True
                outcome = run()
            if outcome.rejection is not None:
                self.reject(out, outcome.rejection, message, event_index, item, now)
                counts["conflict" if outcome.verdict is Verdict.CONFLICT else "invalid"] += 1
                continue
            counts[str(outcome.verdict)] += 1
            if outcome.verdict is Verdict.DUPLICATE:
                continue
            record = outcome.record
            assert record is not None
            state.touch_dedup(dedup_key(record.subscription_id, record.idempotency_key), record.recorded_at_ms)
            out.records.append(record)
            if message.timestamp_ms is not None:
                out.newest_accepted = max(out.newest_accepted or 0, message.timestamp_ms)
            if record.recorded_at_ms < self.watermark.get(message.partition, 0) - BUCKET_MS:
                counts["late"] += 1
            self.watermark[message.partition] = max(self.watermark.get(message.partition, 0), record.recorded_at_ms)
            assert outcome.changed is not None
            key, spans = outcome.changed
            state.touch_window(key)
            out.windows[key] = (record.tenant_id, spans, message.timestamp_ms)
        return len(items)

    def reject(
        self,
        out: BatchOutputs,
        rejection: Rejection,
        message: SourceMessage,
        event_index: int | None,
        event: UsageEvent | None,
        now: int,
    ) -> None:
        """A bounded dead letter: one event of a batch carries that event alone, never the batch."""
        original = message.value or b""
        if event_index is not None:
            where = f"events[{event_index}]" + (f".{rejection.field}" if rejection.field else "")
            rejection = Rejection(
                rejection.reason, rejection.detail, where, rejection.subscription_id, rejection.idempotency_key
            )
            if event is not None:
                original = messages.single_event(event)
        letter = DeadLetter(rejection, original, self.settings.topic(USAGE_EVENTS), message.partition, message.offset)
        value = messages.write_dead_letter(letter, now, message.key, event_index)
        out.letters.append(Output(self.settings.topic(USAGE_DLQ), message.key, value))
        self.metrics.dead_letters.labels(reason=str(rejection.reason)).inc()

    def outputs(self, state: PartitionState, out: BatchOutputs, now: int) -> list[Output]:
        """A chunk's outputs: its accepted records as a few ``usage_record_batch`` messages, its
        changed buckets as a few ``window_batch`` messages (Arrow columns built once, here; no key:
        a batch spans subscriptions, and the partition is the source partition's), its dead
        letters. All go in the chunk's transaction."""
        accepted_topic, windows_topic = self.settings.topic(USAGE_ACCEPTED), self.settings.topic(USAGE_WINDOWS)
        accepted = [
            Output(accepted_topic, None, value, out.newest_accepted)
            for value in messages.write_record_batches(out.records)
        ]
        rows, stamps = [], []
        for key, (tenant, spans, produced_at) in out.windows.items():
            acc = state.windows[key]
            rows.append(WindowRow(key, tenant, spans[0][2], acc.version, acc.totals(), spans[1:]))
            stamps.append(produced_at)
        batches = [
            Output(windows_topic, None, value, newest) for value, newest in messages.write_window_batches(rows, stamps)
        ]
        return [*accepted, *batches, *out.letters]

    def commit(self, owned: OwnedPartition, outputs: list[Output], changelog: list[Any]) -> None:
        """Steps 4 and 6 for one chunk (in the partition's commit thread: it blocks)."""
        if owned.failed:
            raise RuntimeError(f"usage.events[{owned.state.partition}]: an earlier transaction failed")
        try:
            last = owned.writer.commit(outputs, changelog)
        except BaseException:
            owned.failed = True
            raise
        kill_point("committed")
        if owned.checkpoint is not None:
            owned.checkpoint.save(changelog, last)

    # -- catalog ----------------------------------------------------------------------------------

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

    def restart(self) -> NoReturn:
        """Replace this process with a fresh worker (same pid and arguments); an abrupt exit, like a
        crash, which the design makes harmless."""
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    def report_lag(self) -> None:
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.settings.topic(USAGE_EVENTS):
                continue
            highwater = consumer.highwater(tp)
            owned = self.owned.get(tp.partition)
            if highwater is not None and owned is not None:
                self.metrics.lag.labels(partition=str(tp.partition)).set(max(0, highwater - owned.state.next_offset))
