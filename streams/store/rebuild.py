"""The usage store rebuilt from accepted records (the restore drill of docs/operations.md).

``usage.accepted`` holds every event the pipeline accepted, once, with its exact value. Those
records are the source the store can be rebuilt from after its data is lost:
- the raw events are written as they are;
- the 15-minute buckets are derived again with the same window operator the worker runs,
  in the subscription's timezone from the catalog;
- a bucket's version is again its count of distinct events, so rewriting it is idempotent.
Validation and dedup already happened when the events were accepted. A record whose identity
comes twice is counted once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rating.errors import UnknownReference
from streams.inprocess import changed_rows
from streams.operators.dedup import dedup_key
from streams.operators.process import Catalog, metric_lookup
from streams.operators.records import UsageRecord
from streams.operators.windows import WindowAccumulator, WindowKey, WindowSpan, observe
from streams.ports import UsageStore


@dataclass
class RebuildStats:
    records: int = 0
    repeated: int = 0
    """Records whose identity was seen already (left out)."""
    windows: int = 0


class UsageRebuild:
    """Accepted records in, the store's events and buckets out, written every ``batch_size``."""

    def __init__(self, catalog: Catalog, store: UsageStore, batch_size: int = 50_000) -> None:
        self.catalog = catalog
        self.store = store
        self.batch_size = batch_size
        self.stats = RebuildStats()
        self._identities: set[str] = set()
        self._windows: dict[WindowKey, WindowAccumulator] = {}
        self._tenants: dict[str, str] = {}
        self._pending: list[UsageRecord] = []
        self._dirty: dict[WindowKey, tuple[WindowSpan, ...]] = {}

    def add(self, record: UsageRecord, where: str = "") -> None:
        """Count one accepted record; ``where`` (e.g. ``usage.accepted[2]@17``) names it in errors."""
        identity = dedup_key(record.subscription_id, record.idempotency_key)
        if identity in self._identities:
            self.stats.repeated += 1
            return
        subscription = self.catalog.subscription_of(record.subscription_id)
        if subscription is None:
            raise UnknownReference(
                where or "subscription_id", f"subscription {record.subscription_id!r} is not in the catalog"
            )
        metric = metric_lookup(self.catalog, record.subscription_id)(record.metric_code)
        if metric is None:
            raise UnknownReference(where or "metric_code", f"metric {record.metric_code!r} is not in the catalog")
        self._identities.add(identity)
        self._tenants[record.subscription_id] = record.tenant_id
        key, spans = observe(self._windows, record.subscription_id, metric, subscription.timezone, record.point)
        self._dirty[key] = spans
        self._pending.append(record)
        self.stats.records += 1
        if len(self._pending) >= self.batch_size:
            self.flush()

    def run(self, records: Iterable[tuple[UsageRecord, str]]) -> RebuildStats:
        for record, where in records:
            self.add(record, where)
        self.flush()
        return self.stats

    def flush(self) -> None:
        rows = changed_rows(self._dirty, self._windows, self._tenants.__getitem__)
        if self._pending or rows:
            self.store.write(self._pending, rows)
        self.stats.windows = len(self._windows)
        self._pending, self._dirty = [], {}
