"""Adapter from the streams UsageStore to the invoicing UsageReader port."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from invoicing.ports import UsageRequest
from rating.aggregations import SUMMED, quantity, summed_quantity
from rating.periods import epoch_ms
from streams.operators.intervals import UsageQuery
from streams.ports import UsageStore


class StoreUsageReader:
    """Reads the SUM, COUNT and MAX requests through ``store.summed`` (event count, total and
    maximum only, e.g. ClickHouse adding them up in SQL: the same quantities for less work), the
    others through ``store.totals``."""

    def __init__(self, store: UsageStore) -> None:
        self.store = store

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        ms: dict[datetime, int] = {}  # requests of one billing run share their few instants

        def at(instant: datetime) -> int:
            known = ms.get(instant)
            if known is None:
                known = ms[instant] = epoch_ms(instant)
            return known

        queries = [UsageQuery(r.subscription_id, r.metric_code, at(r.start), at(r.end)) for r in requests]
        cheap = [n for n, r in enumerate(requests) if r.aggregation in SUMMED]
        full = [n for n, r in enumerate(requests) if r.aggregation not in SUMMED]
        out: list[Decimal] = [Decimal(0)] * len(requests)
        if cheap:
            for n, s in zip(cheap, self.store.summed([queries[n] for n in cheap]), strict=True):
                out[n] = summed_quantity(requests[n].aggregation, s, queries[n].end_ms)
        if full:
            for n, t in zip(full, self.store.totals([queries[n] for n in full]), strict=True):
                out[n] = quantity(requests[n].aggregation, t, queries[n].end_ms)
        return out
