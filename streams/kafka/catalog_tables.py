"""The catalog as the usage worker holds it: metrics per (tenant, metric code) from ``catalog.terms``
and a :class:`SubscriptionRef` per subscription from ``catalog.subscriptions``, read from the
compacted topics the ledger's outbox relay writes (invoicing/ledger/catalog.py).

Every worker holds the whole catalog (it is small next to usage): a consumer of its own, without a
consumer group, reads every partition of both topics from the beginning at start, keeps reading
new records while the worker runs (:meth:`CatalogTables.refresh`), and can be asked to catch up
with the topics' end as of now (:meth:`CatalogTables.catch_up`).

The exactness rule: an event whose subscription or metric is not in the tables is rejected as
unknown only after the tables have caught up with the end offsets of both topics taken *after*
the event was read from ``usage.events``. So a catalog record the relay committed before the event
was consumed is always seen, however far the periodic refresh lags; an event is dead-lettered as
``unknown_subscription`` or ``unknown_metric`` only when the catalog did not know it at that moment.
The worker catches up at most once per batch: a catch-up after the batch was fetched covers every
event of the batch.

Why not a Faust ``GlobalTable`` with the catalog topic as its changelog (the idiomatic shape)?
Tried against the real broker with faust-streaming 0.15.3:

* the partition assignor finds a global table's changelog by its default name
  (``<app id>-<table>-changelog``), not by the ``changelog_topic`` given; with the catalog topic
  the assignment raises ``KeyError`` inside the group join and the worker hangs silently;
* with that name patched in a subclass, recovery never ends on a topic written in Kafka
  transactions (the relay's): Faust waits until it has seen an *event* at the partition's last
  offset, and that offset is the transaction's commit marker, which is never delivered as an
  event (Faust only skips markers when the app itself runs ``exactly_once``);
* even when it works (a topic written without transactions), the exactness rule above needs to
  know how far the table has applied each partition, including past commit markers; Faust's
  recovery exposes the offset of the last event it buffered, not the consumer position.

A plain consumer gives all three: librdkafka reads ``read_committed`` (never a record of an aborted
relay transaction) and its position moves past commit markers and aborted records. The catch-up
target is each partition's high watermark (read uncommitted), not the last stable offset: a
producer's ``commit_transaction`` returns once the coordinator has decided, before the commit
markers reach the partitions, so a subscription committed just before its first event may not be
below the last stable offset yet. Waiting for the position to pass the high watermark waits for
every transaction that wrote before that moment to be resolved (the relay's take milliseconds;
one left open by a killed relay is aborted by the broker after its transaction timeout, 15 s).

Records: a ``catalog.subscriptions`` value is :func:`subscription_to_json`, a ``catalog.terms``
value is ``{**terms_to_json(terms), "revision": n}``; a record with a lower revision than the one
held is ignored, a tombstone (null value) removes the key, and a value that does not decode is
logged and skipped (the key keeps its previous state: one bad record must not stop usage).
The partitions of both topics are listed once, at start: partitions added to a catalog topic later
are read after the worker's next restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from invoicing.ledger.json_codec import subscription_from_json, terms_record_from_json
from rating.catalog import Metric
from rating.periods import epoch_ms
from streams.kafka.topics import ensure_topics
from streams.operators.process import Catalog
from streams.operators.validate import SubscriptionRef

log = logging.getLogger("billing.worker.catalog")


class CatalogLagging(Exception):
    """The catalog topics could not be read up to their end in time: deciding "unknown" now could
    dead-letter an event whose subscription exists, so the worker restarts instead."""


@dataclass
class CatalogTables:
    """Metrics by (tenant, code) and subscriptions by id, fed from the two compacted topics.

    Used from one thread (the worker's event loop): a refresh never runs in the middle of an
    event's lookups, so one event sees one state of the catalog.
    """

    bootstrap_servers: str
    subscriptions_topic: str
    terms_topic: str
    create_partitions: int = 6
    """Partitions of a catalog topic this worker creates because it is missing (the relay creates
    them too; the count does not matter to a reader of the whole topic)."""
    catch_up_timeout_s: float = 60.0
    subscriptions: dict[str, SubscriptionRef] = field(default_factory=dict)
    metrics: dict[str, dict[str, Metric]] = field(default_factory=dict)
    """tenant id → metric code → metric."""
    revisions: dict[tuple[str, str], int] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    catch_ups: int = 0

    def __post_init__(self) -> None:
        topics = (self.subscriptions_topic, self.terms_topic)
        ensure_topics(
            self.bootstrap_servers,
            self.create_partitions,
            topics=topics,
            config={"cleanup.policy": "compact"},
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": "billing-catalog-reader",  # required by librdkafka; never joined (assign)
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )
        # end offsets including records of open transactions (see the module's docstring)
        self._watermarks = Consumer(
            {"bootstrap.servers": self.bootstrap_servers, "group.id": "billing-catalog-reader"}
            | {"isolation.level": "read_uncommitted"}
        )
        self._partitions: list[TopicPartition] = []
        for topic in topics:
            metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            self._partitions += [TopicPartition(topic, p, -2) for p in sorted(metadata.partitions)]  # -2: beginning
        self._consumer.assign(self._partitions)

    # -- lookups (the Catalog the operators see) ---------------------------------------------

    def subscription_of(self, subscription_id: str) -> SubscriptionRef | None:
        return self.subscriptions.get(subscription_id)

    def metric_for(self, tenant_id: str, code: str) -> Metric | None:
        return self.metrics.get(tenant_id, {}).get(code)

    def catalog(self) -> Catalog:
        """Metrics are looked up under the event's subscription's tenant (``metric_for``); the
        tenant-less ``metric_of`` knows nothing, so a metric of another tenant never matches."""
        return Catalog(lambda _code: None, self.subscription_of, self.metric_for)

    # -- reading the topics -------------------------------------------------------------------

    def refresh(self, max_s: float = 0.05) -> int:
        """Apply what has arrived, for at most about ``max_s`` seconds; returns records applied."""
        return self._drain(time.monotonic() + max_s, wait_s=0.0)

    def catch_up(self) -> int:
        """Read both topics up to their end offsets (high watermarks) as of this call; blocks.
        Used at start, before the worker consumes usage."""
        self.catch_ups += 1
        targets = self._end_offsets()
        deadline = time.monotonic() + self.catch_up_timeout_s
        applied = 0
        while not self._reached(targets):
            self._check(deadline, targets)
            applied += self._drain(time.monotonic() + 0.2, wait_s=0.2)
        return applied

    async def catch_up_async(self) -> int:
        """:meth:`catch_up` for the worker's event loop: it yields while waiting for records, so
        Faust's heartbeats go on (the watermark requests themselves are short blocking calls)."""
        self.catch_ups += 1
        targets = self._end_offsets()
        deadline = time.monotonic() + self.catch_up_timeout_s
        applied = 0
        while not self._reached(targets):
            self._check(deadline, targets)
            applied += self._drain(time.monotonic() + 0.05, wait_s=0.0)
            await asyncio.sleep(0.01)
        return applied

    def close(self) -> None:
        self._consumer.close()
        self._watermarks.close()

    def _check(self, deadline: float, targets: Mapping[tuple[str, int], int]) -> None:
        if time.monotonic() > deadline:
            behind = {f"{t}[{p}]": (self.positions.get((t, p)), end) for (t, p), end in targets.items()}
            raise CatalogLagging(f"catalog topics not read to their end in {self.catch_up_timeout_s}s: {behind}")

    def _end_offsets(self) -> dict[tuple[str, int], int]:
        ends: dict[tuple[str, int], int] = {}
        for tp in self._partitions:
            low, high = self._watermarks.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10, cached=False
            )
            if high > low:
                ends[(tp.topic, tp.partition)] = high
        return ends

    def _reached(self, targets: Mapping[tuple[str, int], int]) -> bool:
        behind = [key for key, end in targets.items() if self.positions.get(key, -1) < end]
        if not behind:
            return True
        # The consumer's position also moves past commit markers and compacted-away offsets.
        for tp in self._consumer.position([TopicPartition(t, p) for t, p in behind]):
            if tp.offset >= 0:
                key = (tp.topic, tp.partition)
                self.positions[key] = max(self.positions.get(key, -1), tp.offset)
        return all(self.positions.get(key, -1) >= end for key, end in targets.items())

    def _drain(self, until: float, wait_s: float) -> int:
        applied = 0
        while True:
            batch: Sequence[Message] = self._consumer.consume(500, timeout=wait_s)
            for message in batch:
                error = message.error()
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                key = (str(topic), int(partition or 0))
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        self.positions[key] = max(self.positions.get(key, -1), offset or 0)
                        continue
                    raise KafkaException(error)
                self._apply(key[0], message.key(), message.value())
                self.positions[key] = max(self.positions.get(key, -1), (offset or 0) + 1)
                applied += 1
            if not batch or time.monotonic() >= until:
                return applied

    def _apply(self, topic: str, raw_key: bytes | None, raw_value: bytes | None) -> None:
        key = (raw_key or b"").decode("utf-8", "replace")
        try:
            if topic == self.subscriptions_topic:
                self._apply_subscription(key, raw_value)
            else:
                self._apply_terms(key, raw_value)
        except Exception as error:  # a bad record must not stop usage: keep the key's previous state
            log.error("%s record %r skipped: %s: %s", topic, key, type(error).__name__, error)

    def _apply_subscription(self, key: str, raw_value: bytes | None) -> None:
        if raw_value is None:
            self.subscriptions.pop(key, None)
            self.revisions.pop(("subscription", key), None)
            return
        record = subscription_from_json(json.loads(raw_value))
        if record.id != key:
            raise ValueError(f"value is subscription {record.id!r}, not the key's")
        if record.revision < self.revisions.get(("subscription", key), 0):
            return
        sub = record.subscription
        self.revisions[("subscription", key)] = record.revision
        self.subscriptions[key] = SubscriptionRef(sub.id, sub.tenant_id, sub.timezone, epoch_ms(sub.start_at))

    def _apply_terms(self, key: str, raw_value: bytes | None) -> None:
        if raw_value is None:
            self.metrics.pop(key, None)
            self.revisions.pop(("terms", key), None)
            return
        record = terms_record_from_json(json.loads(raw_value), "terms")
        if record.tenant_id != key:
            raise ValueError(f"value is tenant {record.tenant_id!r}, not the key's")
        if record.revision < self.revisions.get(("terms", key), 0):
            return
        self.revisions[("terms", key)] = record.revision
        self.metrics[key] = dict(record.terms.metrics)
