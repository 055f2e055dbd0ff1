"""The catalog topics read by those who hold the catalog: :class:`CatalogTopics` reads them and
applies the rules for a record below; a holder keeps what it needs of each record. The usage worker's
:class:`CatalogTables` keeps metrics per (tenant, metric code) from ``catalog.terms`` and a
:class:`SubscriptionRef` per subscription from ``catalog.subscriptions``; the rater
(billing/rate/rater.py) keeps terms, plan versions (``catalog.plans``) and subscription records. The
topics are compacted; the ledger's outbox relay writes them (invoicing/ledger/catalog.py).

Every holder holds the whole catalog (it is small next to usage): a consumer of its own, without a
consumer group, reads every partition of its topics from the beginning at start, keeps reading
new records while the holder runs (:meth:`CatalogTopics.refresh`), and can be asked to catch up
with the topics' end as of now (:meth:`CatalogTopics.catch_up`).

The exactness rule: an event whose subscription or metric is not in the tables is rejected as
unknown only after the tables have caught up with the end offsets of both topics taken *after*
the event was read from ``usage.events``. So a catalog record the relay committed before the event
was consumed is always seen, however far the periodic refresh lags; an event is dead-lettered as
``unknown_subscription`` or ``unknown_metric`` only when the catalog did not know it at that moment.
The worker catches up at most once per batch: a catch-up after the batch was fetched covers every
event of the batch.

Why a plain consumer and not a Faust ``GlobalTable``: docs/decisions/0002-catalog-read-with-a-plain-consumer.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from invoicing.ledger.catalog import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS, plan_key
from invoicing.ledger.json_codec import plan_from_json, subscription_from_json, terms_record_from_json
from invoicing.ports import SubscriptionRecord, TermsRecord
from rating.catalog import Metric, Plan
from rating.periods import epoch_ms
from streams.kafka.consumers import topic_reader
from streams.kafka.topics import ensure_topics
from streams.operators.process import Catalog
from streams.operators.validate import SubscriptionRef

log = logging.getLogger("billing.worker.catalog")


class CatalogLagging(Exception):
    """The catalog topics could not be read up to their end in time: deciding "unknown" now could
    dead-letter an event whose subscription exists, so the worker restarts instead."""


class CatalogTopics(ABC):
    """The reading of catalog topics (see the module docstring); a holder (a subclass) keeps the
    records, each through the hooks below.

    Used from one thread: a refresh never runs in the middle of a holder's lookups, so they see
    one state of the catalog.
    """

    def __init__(
        self, bootstrap_servers: str, topics: Mapping[str, str], create_partitions: int, catch_up_timeout_s: float
    ) -> None:
        """``topics``: each topic's name → what it is (``CATALOG_SUBSCRIPTIONS``, ``CATALOG_TERMS``
        or ``CATALOG_PLANS``), so a prefixed pipeline reads its own."""
        self.kinds = dict(topics)
        self.catch_up_timeout_s = catch_up_timeout_s
        self.revisions: dict[tuple[str, str], int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.catch_ups = 0
        ensure_topics(
            bootstrap_servers, create_partitions, topics=list(self.kinds), config={"cleanup.policy": "compact"}
        )
        group = "billing-catalog-reader"
        self._consumer = topic_reader(bootstrap_servers, group, {"auto.offset.reset": "earliest"})
        # end offsets including records of open transactions (see the module's docstring)
        self._watermarks = topic_reader(bootstrap_servers, group, {"isolation.level": "read_uncommitted"})
        self._partitions: list[TopicPartition] = []
        for topic in self.kinds:
            metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            self._partitions += [TopicPartition(topic, p, -2) for p in sorted(metadata.partitions)]  # -2: beginning
        self._consumer.assign(self._partitions)

    # -- what a holder keeps -------------------------------------------------------------------

    @abstractmethod
    def hold_subscription(self, record: SubscriptionRecord) -> None: ...

    @abstractmethod
    def hold_terms(self, record: TermsRecord) -> None: ...

    def hold_plan(self, key: str, tenant_id: str, plan: Plan) -> None:
        """Only a holder that reads ``catalog.plans`` overrides this; a record of it here is a wiring error."""
        raise NotImplementedError(f"{type(self).__name__} reads no catalog.plans, yet got plan {key!r}")

    @abstractmethod
    def drop(self, kind: str, key: str) -> None:
        """A tombstone of ``key`` on the topic of ``kind``."""

    # -- reading the topics -------------------------------------------------------------------

    def refresh(self, max_s: float = 0.05) -> int:
        """Apply what has arrived, for at most about ``max_s`` seconds; returns records applied."""
        return self._drain(time.monotonic() + max_s, wait_s=0.0)

    def catch_up(self) -> int:
        """Read the topics up to their end offsets (high watermarks) as of this call; blocks.
        Used at start, before the holder acts on the catalog."""
        return sum(self._catching_up(drain_s=0.2, wait_s=0.2))

    async def catch_up_async(self) -> int:
        """:meth:`catch_up` for the worker's event loop: it yields while waiting for records, so
        Faust's heartbeats go on (the watermark requests themselves are short blocking calls)."""
        applied = 0
        for step in self._catching_up(drain_s=0.05, wait_s=0.0):
            applied += step
            await asyncio.sleep(0.01)
        return applied

    def _catching_up(self, drain_s: float, wait_s: float) -> Iterator[int]:
        """The records applied by each step of a catch-up, until the end offsets as of the first
        step are reached; CatalogLagging after ``catch_up_timeout_s``."""
        self.catch_ups += 1
        targets = self._end_offsets()
        deadline = time.monotonic() + self.catch_up_timeout_s
        while not self._reached(targets):
            self._check(deadline, targets)
            yield self._drain(time.monotonic() + drain_s, wait_s=wait_s)

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
        kind, key = self.kinds[topic], (raw_key or b"").decode("utf-8", "replace")
        try:
            if raw_value is None:
                self.revisions.pop((kind, key), None)
                self.drop(kind, key)
            elif kind == CATALOG_PLANS:
                self._apply_plan(key, json.loads(raw_value))
            elif kind == CATALOG_SUBSCRIPTIONS:
                record = subscription_from_json(json.loads(raw_value))
                if self._newest(kind, key, record.id, record.revision):
                    self.hold_subscription(record)
            else:
                terms = terms_record_from_json(json.loads(raw_value), "terms")
                if self._newest(kind, key, terms.tenant_id, terms.revision):
                    self.hold_terms(terms)
        except Exception as error:  # a bad record must not stop usage: keep the key's previous state
            log.error("%s record %r skipped: %s: %s", topic, key, type(error).__name__, error)

    def _newest(self, kind: str, key: str, named: str, revision: int) -> bool:
        """Whether a record naming ``named`` with ``revision`` replaces what is held under ``key``."""
        if named != key:
            raise ValueError(f"value names {named!r}, its key {key!r}")
        if revision < self.revisions.get((kind, key), 0):
            return False
        self.revisions[(kind, key)] = revision
        return True

    def _apply_plan(self, key: str, raw: dict[str, Any]) -> None:
        plan = plan_from_json(raw)
        tenant_id = raw["tenant_id"]
        if plan_key(tenant_id, plan.code, plan.version) != key:
            raise ValueError(f"value names plan {tenant_id}/{plan.code}/{plan.version}, its key {key!r}")
        self.hold_plan(key, tenant_id, plan)


@dataclass
class CatalogTables(CatalogTopics):
    """The usage worker's catalog: metrics by (tenant, code) and subscriptions by id, fed from the
    two compacted topics (used from the worker's event loop)."""

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

    def __post_init__(self) -> None:
        topics = {self.subscriptions_topic: CATALOG_SUBSCRIPTIONS, self.terms_topic: CATALOG_TERMS}
        CatalogTopics.__init__(self, self.bootstrap_servers, topics, self.create_partitions, self.catch_up_timeout_s)

    # -- lookups (the Catalog the operators see) ---------------------------------------------

    def subscription_of(self, subscription_id: str) -> SubscriptionRef | None:
        return self.subscriptions.get(subscription_id)

    def metric_for(self, tenant_id: str, code: str) -> Metric | None:
        return self.metrics.get(tenant_id, {}).get(code)

    def catalog(self) -> Catalog:
        """Metrics are looked up under the event's subscription's tenant (``metric_for``); the
        tenant-less ``metric_of`` knows nothing, so a metric of another tenant never matches."""
        return Catalog(lambda _code: None, self.subscription_of, self.metric_for)

    # -- what it keeps ---------------------------------------------------------------------------

    def hold_subscription(self, record: SubscriptionRecord) -> None:
        sub = record.subscription
        self.subscriptions[sub.id] = SubscriptionRef(sub.id, sub.tenant_id, sub.timezone, epoch_ms(sub.start_at))

    def hold_terms(self, record: TermsRecord) -> None:
        self.metrics[record.tenant_id] = dict(record.terms.metrics)

    def drop(self, kind: str, key: str) -> None:
        if kind == CATALOG_SUBSCRIPTIONS:
            self.subscriptions.pop(key, None)
        else:
            self.metrics.pop(key, None)
