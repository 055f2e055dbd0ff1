"""The outbox relay: every committed row of the ledger's ``outbox`` table reaches its Kafka topic
exactly once, in id order, even when the relay is killed at any point or several relays run.

Why it is exact (docs/outbox.md has the long form):

* Kafka's committed state is the truth, PostgreSQL's ``published_at`` is bookkeeping. Each batch
  is one Kafka transaction holding the batch's records *and* a progress record (the ids of the
  batch) on the compacted ``outbox.progress`` topic, so the records and the knowledge that they
  were published commit together or not at all.
* The producer's transactional.id is fixed: starting a relay fences every earlier producer with
  that id (a zombie's next commit fails) and aborts the transaction it left open.
* A batch is marked published in PostgreSQL after its Kafka commit and before the next batch
  starts, so at any moment only the newest committed batch can be published but unmarked; a
  starting relay reads that batch from ``outbox.progress`` (read_committed) and marks it first.
* Rows are chosen by ``published_at IS NULL``, never by "id above the last one published":
  outbox ids are drawn when a row is inserted, not when it commits, so a row with a smaller id
  can become visible after larger ones were published, and a watermark would skip it forever.
* A session advisory lock per transactional.id lets one relay work while the others wait as hot
  standbys; it avoids wasted work and fencing ping-pong, exactness does not rest on it.

The steps of one activation and of one batch, in order:

1. take the relay lock (wait as a standby while another relay holds it);
2. ``init_transactions()``: fence earlier producers of this transactional.id, abort their
   open transaction;
3. read this relay's last committed progress record (read_committed, to the end of the topic);
4. mark the rows of that record published in PostgreSQL;
then, per batch:
5. select up to ``batch_size`` unpublished rows in id order;
6. begin a transaction; produce each row (key, payload bytes, header ``outbox-id``) and the
   progress record;
7. commit the transaction;
8. mark the batch published in PostgreSQL (retried until it succeeds or the relay stops).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from billing.clock import wall_ms
from invoicing.ledger.outbox import OutboxRow, OutboxTable
from streams.ingest.partitioning import PRODUCER_PARTITIONER
from streams.kafka.consumers import topic_reader
from streams.kafka.security import client_config
from streams.kafka.topics import OUTBOX_PROGRESS, OUTBOX_TOPICS, ensure_topics

log = logging.getLogger("billing.relay")

OUTBOX_ID_HEADER: Final = "outbox-id"
DEFAULT_TRANSACTIONAL_ID: Final = "billing-outbox-relay"


class RelayStopped(Exception):
    """The relay was asked to stop while it waited."""


class ProgressTopicShared(Exception):
    """``outbox.progress`` holds another relay's records: give each transactional.id its own
    progress topic (a foreign open transaction there could hide this relay's newest record)."""


@dataclass(frozen=True, slots=True)
class RelaySettings:
    bootstrap_servers: str
    transactional_id: str = DEFAULT_TRANSACTIONAL_ID
    progress_topic: str = OUTBOX_PROGRESS
    batch_size: int = 1000
    poll_interval_s: float = 0.2
    partitions: int = 6
    """Partitions of the outbox topics the relay creates when they are missing."""
    create_topics: Sequence[str] = OUTBOX_TOPICS
    transaction_timeout_ms: int = 15_000
    """How long the broker keeps a dead relay's transaction open (read_committed consumers of the
    topics wait that long at most); a restarted relay aborts it at once."""
    producer_config: dict[str, Any] = field(default_factory=dict)
    topic_prefix: str = ""
    """Put before every outbox row's topic (and the topics created): a pipeline of its own on a
    shared cluster, like the workers' ``--topic-prefix``."""


@dataclass(slots=True)
class RelayStats:
    published: int = 0
    batches: int = 0
    recovered: int = 0
    """Rows of the last committed batch found unmarked in PostgreSQL at activation."""
    activations: int = 0


class RelayMetrics:
    """What an operator watches on the relay: rows and batches published, whether this instance is
    the active one, how long a batch takes, and the batches that failed and were retried."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter(
            "billing_outbox_published_rows",
            "Outbox rows published to Kafka, by topic",
            ["topic"],
            registry=self.registry,
        )
        self.batches = Counter("billing_outbox_batches", "Kafka transactions committed", registry=self.registry)
        self.failures = Counter(
            "billing_outbox_batch_failures",
            "Batches aborted and retried, by cause: kafka, database",
            ["cause"],
            registry=self.registry,
        )
        self.active = Gauge(
            "billing_outbox_relay_active", "1 while this relay is the active one (0: standby)", registry=self.registry
        )
        self.batch_seconds = Histogram(
            "billing_outbox_batch_seconds",
            "One batch: select, produce, commit in Kafka, mark in PostgreSQL",
            registry=self.registry,
        )
        self.last_published = Gauge(
            "billing_outbox_last_published_timestamp_seconds",
            "When this relay last committed a batch (Unix time)",
            registry=self.registry,
        )
        for cause in ("kafka", "database"):
            self.failures.labels(cause=cause)


Step = Callable[[str, Sequence[int]], None]
"""Called with ``produced`` (the batch is on the brokers in the open transaction), ``committed``
(not marked in PostgreSQL yet) and ``marked``, and the batch's ids; fault tests kill the relay there."""


def _ranges(ids: Sequence[int]) -> list[list[int]]:
    """Sorted ids as inclusive ``[first, last]`` runs: a batch of consecutive ids is one pair."""
    runs: list[list[int]] = []
    for n in sorted(ids):
        if runs and runs[-1][1] + 1 == n:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return runs


def _ids(runs: Sequence[Sequence[int]]) -> list[int]:
    return [n for first, last in runs for n in range(first, last + 1)]


def _fenced(error: KafkaError) -> bool:
    return error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)


class OutboxRelay:
    """Publishes the outbox of the ledger on ``engine``; see the module docstring."""

    def __init__(
        self, engine: Engine, settings: RelaySettings, on_step: Step | None = None, metrics: RelayMetrics | None = None
    ) -> None:
        self.outbox = OutboxTable(engine)
        self.settings = settings
        self.on_step = on_step
        self.stats = RelayStats()
        self.metrics = metrics or RelayMetrics()
        self._lock: Connection | None = None
        self._producer: Producer | None = None

    # -- activation (steps 1-4) -----------------------------------------------------------------

    def _take_lock(self, stop: threading.Event) -> None:
        waiting = False
        while True:
            if stop.is_set():
                raise RelayStopped
            try:
                self._lock = self.outbox.try_lock(self.settings.transactional_id)
            except DBAPIError as error:
                log.warning("relay lock: database unavailable (%s)", error.orig)
                stop.wait(self.settings.poll_interval_s * 5)
                continue
            if self._lock is not None:
                return
            if not waiting:
                log.info("relay %s: another relay is active, standing by", self.settings.transactional_id)
                waiting = True
            stop.wait(max(self.settings.poll_interval_s, 0.5))

    def _lock_held(self) -> bool:
        """The lock's connection is alive (a server restart ends it, and the lock with it)."""
        if self._lock is None:
            return False
        if not self.outbox.lock_alive(self._lock):
            self._release_lock()
            return False
        return True

    def _release_lock(self) -> None:
        if self._lock is not None:
            self.outbox.release(self._lock)
            self._lock = None

    def _new_producer(self) -> Producer:
        config: dict[str, Any] = {
            **client_config(self.settings.bootstrap_servers),
            "transactional.id": self.settings.transactional_id,
            "transaction.timeout.ms": self.settings.transaction_timeout_ms,
            "message.timeout.ms": self.settings.transaction_timeout_ms - 1000,
            "partitioner": PRODUCER_PARTITIONER,  # the same partition per key as every other producer
            "linger.ms": 5,
            **self.settings.producer_config,
        }
        producer = Producer(config)
        producer.init_transactions(self.settings.transaction_timeout_ms / 1000)
        return producer

    def committed_progress(self) -> list[int]:
        """The ids of this relay's newest committed batch (empty before its first), read to the end
        of the progress topic with read_committed."""
        settings = self.settings
        consumer = topic_reader(settings.bootstrap_servers, f"{settings.transactional_id}.progress")
        try:
            topic = consumer.list_topics(settings.progress_topic, timeout=30).topics[settings.progress_topic]
            if topic.error is not None:
                raise KafkaException(topic.error)
            partitions = [TopicPartition(settings.progress_topic, p, -2) for p in topic.partitions]  # -2: beginning
            consumer.assign(partitions)
            pending = {p.partition for p in partitions}
            newest: list[int] = []
            while pending:
                message = consumer.poll(1.0)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition() or 0)
                        continue
                    raise KafkaException(error)
                key = (message.key() or b"").decode()
                if key != settings.transactional_id:
                    raise ProgressTopicShared(f"{settings.progress_topic} has records of relay {key!r}")
                value = message.value()
                newest = [] if value is None else _ids(json.loads(value)["ids"])
            return newest
        finally:
            consumer.close()

    def activate(self, stop: threading.Event) -> None:
        """Steps 1-4: become the active relay (waiting while another one is) and recover."""
        self.deactivate()
        self._take_lock(stop)
        try:
            settings = self.settings
            topics = [settings.topic_prefix + t for t in settings.create_topics]
            ensure_topics(settings.bootstrap_servers, settings.partitions, topics=topics)
            compacted = {"cleanup.policy": "compact"}
            ensure_topics(settings.bootstrap_servers, 1, topics=[settings.progress_topic], config=compacted)
            self._producer = self._new_producer()
            last = self.committed_progress()
            marked = self._mark(last, stop)
            self.stats.recovered += marked
            self.stats.activations += 1
            self.metrics.active.set(1)
            log.info(
                "relay %s active: last committed batch %s, %d of its rows marked published now",
                settings.transactional_id,
                _ranges(last),
                marked,
            )
        except BaseException:
            self.deactivate()
            raise

    def deactivate(self) -> None:
        if self._producer is not None:
            # aborts an open transaction; a fenced producer has nothing left to send
            with suppress(Exception):
                self._producer.close()
            self._producer = None
        self.metrics.active.set(0)
        self._release_lock()

    @property
    def active(self) -> bool:
        return self._producer is not None

    # -- one batch (steps 5-8) ------------------------------------------------------------------

    def pending(self, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` unpublished rows, oldest id first."""
        return self.outbox.pending(limit)

    def _mark(self, ids: Sequence[int], stop: threading.Event) -> int:
        """Set ``published_at`` on those of ``ids`` not marked yet; retried while the database is
        unavailable, since the next batch must not start before this one is marked (a relay that
        stops first leaves it to the next activation, step 4)."""
        if not ids:
            return 0
        while True:
            try:
                return self.outbox.mark_published(ids)
            except DBAPIError as error:
                log.warning("marking %d rows published: database unavailable (%s)", len(ids), error.orig)
                if stop.wait(self.settings.poll_interval_s * 5):
                    raise RelayStopped from error

    def _step(self, name: str, ids: Sequence[int]) -> None:
        if self.on_step is not None:
            self.on_step(name, ids)

    def publish_batch(self, stop: threading.Event) -> int:
        """Steps 5-8 once; the number of rows published (0 when none were pending)."""
        producer = self._producer
        assert producer is not None, "activate() first"
        started = time.perf_counter()
        rows = self.pending(self.settings.batch_size)
        if not rows:
            return 0
        ids = [row.id for row in rows]
        producer.begin_transaction()
        try:
            for row in rows:
                topic = self.settings.topic_prefix + row.topic
                self._produce(producer, topic, row.key.encode(), row.payload, [(OUTBOX_ID_HEADER, str(row.id))])
            progress = json.dumps({"ids": _ranges(ids), "last_id": ids[-1]}).encode()
            self._produce(producer, self.settings.progress_topic, self.settings.transactional_id.encode(), progress)
            producer.flush(self.settings.transaction_timeout_ms / 1000)  # the commit would wait for it too
            self._step("produced", ids)
            self._commit(producer)
        except KafkaException as error:
            kafka_error: KafkaError = error.args[0]
            if _fenced(kafka_error):
                raise
            with suppress(KafkaException):
                producer.abort_transaction(self.settings.transaction_timeout_ms / 1000)
            raise
        self._step("committed", ids)
        self._mark(ids, stop)
        self._step("marked", ids)
        self.stats.published += len(rows)
        self.stats.batches += 1
        for row in rows:
            self.metrics.published.labels(topic=row.topic).inc()
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.last_published.set(wall_ms() / 1000)
        return len(rows)

    @staticmethod
    def _produce(
        producer: Producer,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)

    def _commit(self, producer: Producer) -> None:
        timeout = self.settings.transaction_timeout_ms / 1000
        while True:
            try:
                producer.commit_transaction(timeout)
                return
            except KafkaException as error:
                if not error.args[0].retriable():
                    raise

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> RelayStats:
        """Publish until ``stop`` is set (or, with ``until_idle``, until nothing is pending). A fenced
        relay or one that lost its lock goes back to standby; a failed batch is aborted and retried."""
        backoff = self.settings.poll_interval_s
        try:
            while not stop.is_set():
                try:
                    if not self.active or not self._lock_held():
                        self.activate(stop)
                    published = self.publish_batch(stop)
                except RelayStopped:
                    break
                except KafkaException as error:
                    if _fenced(error.args[0]):
                        log.warning("relay fenced by a newer one (%s): standing by", error.args[0])
                        self.deactivate()
                        continue
                    log.error("batch aborted, retrying in %.1fs: %s", backoff, error.args[0])
                    self.metrics.failures.labels(cause="kafka").inc()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                except DBAPIError as error:
                    log.error("database error, retrying in %.1fs: %s", backoff, error.orig)
                    self.metrics.failures.labels(cause="database").inc()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = self.settings.poll_interval_s
                if published == 0:
                    if until_idle:
                        break
                    stop.wait(self.settings.poll_interval_s)
        finally:
            self.deactivate()
        return self.stats
