"""In-memory UsageStore: the fast default of ``billing simulate``; held to the same contract tests
as the ClickHouse store."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

import pyarrow as pa

from rating.aggregations import Point, SummedTotals, WindowTotals, merge_all, summed_of
from streams.clickhouse.columns import check_window_table, event_records, window_rows
from streams.operators.intervals import UsageQuery, assemble, plan_read
from streams.operators.records import UsageRecord
from streams.operators.windows import Granularity, WindowKey
from streams.ports import DeadLetter, DeadLetterSink, WindowRow


class MemoryUsageStore:
    def __init__(self) -> None:
        self._points: dict[tuple[str, str], list[Point]] = defaultdict(list)
        self._identities: set[tuple[str, str]] = set()
        self._windows: dict[WindowKey, WindowRow] = {}
        self._starts: dict[tuple[str, str, Granularity], list[int]] = defaultdict(list)

    def write(self, records: Sequence[UsageRecord], windows: Sequence[WindowRow]) -> None:
        for record in records:
            identity = (record.subscription_id, record.idempotency_key)
            if identity in self._identities:
                continue
            self._identities.add(identity)
            bisect.insort(self._points[(record.subscription_id, record.metric_code)], record.point)
        for row in windows:
            if row.key.granularity is not Granularity.QUARTER or len(row.rollups) != 3:
                raise ValueError(
                    f"window {row.key}: only 15-minute buckets with their hour, day and month are written; "
                    "roll-ups are folded from them"
                )
        for row in windows:
            current = self._windows.get(row.key)
            if current is None:
                key = row.key
                bisect.insort(self._starts[(key.subscription_id, key.metric_code, key.granularity)], key.start_ms)
            if current is None or row.version > current.version:
                self._windows[row.key] = row

    def write_event_table(self, table: pa.Table) -> None:
        self.write(event_records(table), ())  # checks the columns as the ClickHouse store does

    def write_window_table(self, table: pa.Table) -> None:
        check_window_table(table)  # exactly usage_windows' columns, as the ClickHouse store inserts
        self.write((), window_rows(table))

    def _edge(self, subscription_id: str, metric_code: str, span: tuple[int, int]) -> list[Point]:
        points = self._points.get((subscription_id, metric_code), [])
        lo = bisect.bisect_left(points, span[0], key=lambda p: p.at_ms)
        hi = bisect.bisect_left(points, span[1], key=lambda p: p.at_ms)
        return points[lo:hi]

    def totals(self, queries: Sequence[UsageQuery]) -> list[WindowTotals]:
        results = []
        for q in queries:
            plan = plan_read(q.start_ms, q.end_ms)
            rows = self.windows(q.subscription_id, q.metric_code, Granularity.QUARTER, *plan.buckets)
            results.append(
                assemble(
                    self._edge(q.subscription_id, q.metric_code, plan.left),
                    (row.totals for row in rows),
                    self._edge(q.subscription_id, q.metric_code, plan.right),
                )
            )
        return results

    def summed(self, queries: Sequence[UsageQuery]) -> list[SummedTotals]:
        return [summed_of(t) for t in self.totals(queries)]

    def windows(
        self, subscription_id: str, metric_code: str, granularity: Granularity, start_ms: int, end_ms: int
    ) -> list[WindowRow]:
        starts = self._starts.get((subscription_id, metric_code, Granularity.QUARTER), [])
        if granularity is Granularity.QUARTER:
            lo, hi = bisect.bisect_left(starts, start_ms), bisect.bisect_left(starts, end_ms)
            return [self._windows[WindowKey(subscription_id, metric_code, granularity, s)] for s in starts[lo:hi]]
        # a roll-up folds its buckets in time order, as the ClickHouse store's usage_rollups view does
        level = (Granularity.HOUR, Granularity.DAY, Granularity.MONTH).index(granularity)
        buckets: dict[tuple[int, int], list[WindowRow]] = defaultdict(list)
        for start in starts:
            row = self._windows[WindowKey(subscription_id, metric_code, Granularity.QUARTER, start)]
            _, span_start, span_end = row.rollups[level]
            if start_ms <= span_start < end_ms and row.totals.event_count:
                buckets[(span_start, span_end)].append(row)
        rolled = []
        for (span_start, span_end), rows in sorted(buckets.items()):
            totals = merge_all(row.totals for row in rows)
            key = WindowKey(subscription_id, metric_code, granularity, span_start)
            rolled.append(WindowRow(key, rows[0].tenant_id, span_end, totals.event_count, totals))
        return rolled


class MemoryDeadLetters:
    """Rejected events kept in memory (a run's result), and handed on to ``forward`` if given
    (the usage store's ``dead_letters`` table, where they outlive the run)."""

    def __init__(self, forward: DeadLetterSink | None = None) -> None:
        self.letters: list[DeadLetter] = []
        self.forward = forward

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)
        if self.forward is not None:
            self.forward.publish(letters)
