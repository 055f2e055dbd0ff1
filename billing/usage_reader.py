"""Adapter from the streams UsageStore to the invoicing UsageReader port."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from invoicing.ports import UsageRequest
from rating.aggregations import quantity
from rating.periods import epoch_ms
from streams.operators.intervals import UsageQuery
from streams.ports import UsageStore


class StoreUsageReader:
    def __init__(self, store: UsageStore) -> None:
        self.store = store

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        queries = [UsageQuery(r.subscription_id, r.metric_code, epoch_ms(r.start), epoch_ms(r.end)) for r in requests]
        totals = self.store.totals(queries)
        return [quantity(r.aggregation, t, q.end_ms) for r, t, q in zip(requests, totals, queries, strict=True)]
