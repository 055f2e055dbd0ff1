"""Adapter from the streams UsageStore to the invoicing UsageReader port."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from invoicing.ports import UsageRequest
from rating.aggregations import quantity
from rating.catalog import Aggregation
from rating.periods import epoch_ms
from streams.operators.intervals import UsageQuery
from streams.ports import UsageStore

SUMMED = frozenset({Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX})
"""Aggregations whose quantity needs only an interval's event count, total and maximum."""


class StoreUsageReader:
    """Reads through ``store.totals``. A store that also offers ``summed(queries)`` (event count,
    total and maximum only, e.g. ClickHouse adding them up in SQL) answers the SUM, COUNT and MAX
    requests with it: the same quantities for less work."""

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
        summed = getattr(self.store, "summed", None)
        split = summed is not None and any(r.aggregation in SUMMED for r in requests)
        if not split:
            totals = self.store.totals(queries)
            return [quantity(r.aggregation, t, q.end_ms) for r, t, q in zip(requests, totals, queries, strict=True)]
        assert summed is not None
        cheap = [n for n, r in enumerate(requests) if r.aggregation in SUMMED]
        full = [n for n, r in enumerate(requests) if r.aggregation not in SUMMED]
        out: list[Decimal] = [Decimal(0)] * len(requests)
        for picked, read in ((cheap, summed), (full, self.store.totals)):
            if not picked:
                continue
            for n, t in zip(picked, read([queries[n] for n in picked]), strict=True):
                out[n] = quantity(requests[n].aggregation, t, queries[n].end_ms)
        return out
