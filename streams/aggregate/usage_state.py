"""The usage worker's state per source partition, and the Kafka transaction that makes a batch durable.

Each source partition of ``usage.events`` has its dedup entries, its window accumulators and the
next source offset they reflect. A batch of a partition is committed as one Kafka transaction of a
producer whose ``transactional.id`` names the partition: its outputs (accepted records, window
totals, dead letters), its state changes on the compacted ``<app id>-state`` topic and the
partition's progress marker, all visible together or not at all (docs/decisions/0001).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.kafka.consumers import read_ranges, topic_reader
from streams.kafka.topics import ensure_topics
from streams.operators.dedup import DedupEntry
from streams.operators.windows import BUCKET_MS, Granularity, WindowAccumulator, WindowKey

log = logging.getLogger("billing.worker")

MARKER = b"o"
"""Changelog key of a partition's progress: the next source offset and the source topic's id, in
ASCII ("1234 tg8VE13yTWCpgrSMlqxRbg")."""
_DEDUP = b"d"
_WINDOW = b"w"
_SEP = "\x1f"
_LOCAL_OFFSET = b"\x00changelog_offset"
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact"}

Record = tuple[bytes, bytes | None]
"""A changelog record: key, value (None: a tombstone)."""


def state_topic(app_id: str) -> str:
    """The compacted topic holding the state of the worker group ``app_id``."""
    return f"{app_id}-state"


def kill_point(step: str) -> None:
    """Fault injection for the crash tests: ``BILLING_WORKER_KILL_AT=step:n`` SIGKILLs this process
    the n-th time it reaches ``step`` (produced, committed, restoring). Inert without the variable."""
    wanted = os.environ.get("BILLING_WORKER_KILL_AT")
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != step:
        return
    _kill_counts[step] = _kill_counts.get(step, 0) + 1
    if _kill_counts[step] >= int(count or "1"):
        log.warning("fault injection: SIGKILL at %s", step)
        os.kill(os.getpid(), signal.SIGKILL)


_kill_counts: dict[str, int] = {}


def window_state_key(key: WindowKey) -> str:
    return _SEP.join((key.subscription_id, key.metric_code, str(key.granularity), str(key.start_ms)))


def _window_key(text: str) -> WindowKey:
    subscription_id, metric_code, granularity, start = text.split(_SEP)
    return WindowKey(subscription_id, metric_code, Granularity(granularity), int(start))


@dataclass
class PartitionState:
    """Dedup entries and windows of one source partition, and the next source offset they reflect.

    The operators mutate ``dedup`` and ``windows`` in place; ``touch_*`` records what a batch
    changed so that ``changelog`` writes exactly those keys."""

    partition: int
    dedup: dict[str, DedupEntry] = field(default_factory=dict)
    recorded_at: dict[str, int] = field(default_factory=dict)
    windows: dict[WindowKey, WindowAccumulator] = field(default_factory=dict)
    next_offset: int = 0
    source_topic_id: str = ""
    """The id of the ``usage.events`` topic the offsets are of (a recreated topic has a new one)."""
    changed_dedup: set[str] = field(default_factory=set)
    changed_windows: set[WindowKey] = field(default_factory=set)
    purged: list[bytes] = field(default_factory=list)

    def touch_dedup(self, key: str, recorded_at_ms: int) -> None:
        self.recorded_at[key] = recorded_at_ms
        self.changed_dedup.add(key)

    def touch_window(self, key: WindowKey) -> None:
        self.changed_windows.add(key)

    def changelog(self) -> list[Record]:
        """The records that make the state durable as it is now (and forget what changed)."""
        records: list[Record] = [(key, None) for key in self.purged]
        for key in self.changed_dedup:
            entry = self.dedup[key]
            value = [entry.fingerprint, entry.partition, entry.position, self.recorded_at.get(key, 0)]
            records.append((_DEDUP + key.encode(), json.dumps(value).encode()))
        for wkey in self.changed_windows:
            state = self.windows[wkey].to_state()
            records.append((_WINDOW + window_state_key(wkey).encode(), json.dumps(state).encode()))
        records.append((MARKER, f"{self.next_offset} {self.source_topic_id}".strip().encode()))
        self.changed_dedup, self.changed_windows, self.purged = set(), set(), []
        return records

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (restore)."""
        kind, rest = key[:1], key[1:].decode()
        if kind == MARKER:
            if value is not None:
                offset, _, topic_id = value.decode().partition(" ")
                self.next_offset, self.source_topic_id = int(offset), topic_id
        elif kind == _DEDUP:
            if value is None:
                self.dedup.pop(rest, None)
                self.recorded_at.pop(rest, None)
            else:
                fingerprint, partition, position, recorded_at = json.loads(value)
                self.dedup[rest] = DedupEntry(fingerprint, partition, position)
                self.recorded_at[rest] = recorded_at
        elif kind == _WINDOW:
            wkey = _window_key(rest)
            if value is None:
                self.windows.pop(wkey, None)
            else:
                self.windows[wkey] = WindowAccumulator.from_state(json.loads(value))

    def purge(self, horizon_ms: int) -> int:
        """Forget identities recorded before ``horizon_ms`` and windows that ended long before it;
        their tombstones go out with the next batch. Their totals are in ClickHouse already."""
        old = [key for key, at in self.recorded_at.items() if at < horizon_ms]
        for key in old:
            self.dedup.pop(key, None)
            del self.recorded_at[key]
            self.changed_dedup.discard(key)
            self.purged.append(_DEDUP + key.encode())
        # a bucket that starts a bucket before the horizon holds only events older than it, which are
        # refused as beyond_retention from now on (hour/day/month entries of older workers go too)
        stale = [wkey for wkey in self.windows if wkey.start_ms < horizon_ms - BUCKET_MS]
        for wkey in stale:
            del self.windows[wkey]
            self.changed_windows.discard(wkey)
            self.purged.append(_WINDOW + window_state_key(wkey).encode())
        return len(old) + len(stale)


class LocalCheckpoint:
    """A partition's state on local disk (RocksDB, ``--store rocksdb``) with the changelog offset it
    reflects, written only after the transaction it mirrors committed: never ahead of the changelog,
    so a restart reads just the changelog's tail (a fresh directory reads all of it)."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path))

    def load(self, state: PartitionState) -> int:
        """Fill ``state`` from disk; the last changelog offset it reflects (-1: none)."""
        offset = -1
        for key, value in self.db.items():
            assert isinstance(key, bytes) and isinstance(value, bytes)
            if key == _LOCAL_OFFSET:
                offset = int(value)
            else:
                state.apply(key, value)
        return offset

    def save(self, records: Iterable[Record], changelog_offset: int) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch()
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(_LOCAL_OFFSET, str(changelog_offset).encode())
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True)
class Output:
    """One record of a batch's outputs."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


class PartitionWriter:
    """The transactional producer of one source partition (``transactional.id`` = group + partition):
    a new owner's ``init_transactions`` fences the previous one and aborts its open transaction."""

    def __init__(self, config: dict[str, Any], app_id: str, state_topic_name: str, partition: int) -> None:
        self.partition = partition
        self.state_topic = state_topic_name
        self.producer = Producer(
            {
                **config,
                "transactional.id": f"{app_id}-usage-{partition}",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "transaction.timeout.ms": 60_000,
                "message.max.bytes": 1_000_000,
            }
        )
        self.producer.init_transactions(60)

    def commit(self, outputs: Iterable[Output], changelog: list[Record]) -> int:
        """Write ``outputs`` and ``changelog`` in one transaction; the last changelog offset.

        Raises KafkaException when the transaction cannot commit (fenced by a new owner, broker
        gone): the caller must drop its state for the partition, which is now ahead of Kafka."""
        producer = self.producer
        last = [-1]

        def delivered(error: Any, message: Any) -> None:
            if error is None and message.topic() == self.state_topic:
                last[0] = max(last[0], message.offset())

        producer.begin_transaction()
        for out in outputs:
            self._produce(out.topic, out.key, out.value, out.timestamp_ms, None)
        for key, value in changelog:
            self._produce(self.state_topic, key, value, None, delivered)
        kill_point("produced")
        producer.commit_transaction(60)
        return last[0]

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None,
        on_delivery: Callable[[Any, Any], None] | None,
    ) -> None:
        extra: dict[str, Any] = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        if on_delivery is not None:
            extra["on_delivery"] = on_delivery
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, partition=self.partition, **extra)
                return
            except BufferError:
                self.producer.poll(0.05)

    def close(self) -> None:
        self.producer.flush(0)


def ensure_state_topic(bootstrap: str, name: str, partitions: int) -> None:
    ensure_topics(bootstrap, partitions, topics=[name], config=STATE_TOPIC_CONFIG)


class SourceTopicChanged(Exception):
    """The state's offsets are of another ``usage.events`` than the one being read (the topic was
    deleted and created again): applying them would skip or misplace events, so the worker stops."""


def topic_id(config: dict[str, Any], topic: str) -> str:
    """The id Kafka gave ``topic`` when it was created (a recreated topic gets a new one)."""
    admin = AdminClient(config)
    description = admin.describe_topics(TopicCollection([topic]), request_timeout=30)[topic].result()
    return str(description.topic_id)


def read_changelog(config: dict[str, Any], topic: str, partition: int, start: int) -> Iterator[tuple[int, Record]]:
    """The committed records of one changelog partition from ``start`` to its current end; raises
    TimeoutError when the broker stops answering."""
    settings = {**config, "auto.offset.reset": "earliest", "fetch.max.bytes": 52_428_800}
    consumer = topic_reader(config["bootstrap.servers"], f"{topic}-restore", settings)
    try:
        tp = TopicPartition(topic, partition)
        low, high = consumer.get_watermark_offsets(tp, timeout=30)
        begin = max(start, low)
        if begin >= high:
            return
        for message in read_ranges(consumer, {(topic, partition): (begin, high)}):
            offset, key = message.offset(), message.key()
            assert offset is not None and key is not None  # a data record of a compacted topic
            yield offset, (key, message.value())
    finally:
        consumer.close()


def read_source(
    config: dict[str, Any], topic: str, partition: int, start: int, end: int, timeout_s: float = 30.0
) -> Iterator[tuple[int, bytes | None, bytes | None, int | None]]:
    """Source messages ``[start, end)`` of one partition (offset, key, value, timestamp), to fill a
    gap Faust left: messages it dropped at a rebalance, or offsets it committed ahead of a batch
    that never became durable. Raises TimeoutError when the broker stops answering."""
    consumer = topic_reader(config["bootstrap.servers"], f"{topic}-gap", config)
    try:
        for message in read_ranges(consumer, {(topic, partition): (start, end)}, timeout_s):
            kind, timestamp = message.timestamp()
            yield message.offset() or 0, message.key(), message.value(), timestamp if kind else None
    finally:
        consumer.close()
