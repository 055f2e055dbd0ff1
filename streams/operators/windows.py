"""Event-time windows as plain keyed state: 15-minute buckets, each knowing the hour, day and month
(in the subscription's timezone) it rolls up into. Every real UTC offset is a multiple of 15
minutes, so each roll-up is a union of whole buckets, folded by the store when read (ClickHouse's
``usage_rollups`` view), never kept as state: an event costs one window, not four
(docs/decisions/0004-rollups-folded-from-buckets.md). A bucket's version is its count of distinct
events, so it only grows and a rewrite is harmless."""

from __future__ import annotations

import bisect
from collections.abc import MutableMapping
from datetime import UTC, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

from rating.aggregations import Point, WindowTotals
from rating.catalog import Aggregation, Metric
from rating.numbers import WIDE
from rating.periods import epoch_ms as to_ms
from rating.periods import from_epoch_ms, local_to_utc, zone

BUCKET_MS = 15 * 60 * 1000
HOUR_MS = 3_600_000
_add = WIDE.add
"""Addition in the wide context without entering it: ``observe`` runs four times per event."""
POSITIONS_PER_OFFSET = 1 << 16
"""Events one Kafka message (a batch) may carry: position = offset × this + index in the batch."""


class Granularity(StrEnum):
    QUARTER = "15m"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


class WindowKey(NamedTuple):
    """A window's identity; a NamedTuple because it is hashed four times per event."""

    subscription_id: str
    metric_code: str
    granularity: Granularity
    start_ms: int


WindowSpan = tuple[Granularity, int, int]
"""(granularity, start, end) of one window."""


@lru_cache(maxsize=65536)
def rollup_windows(bucket_ms: int, timezone: str) -> tuple[WindowSpan, WindowSpan, WindowSpan, WindowSpan]:
    """(granularity, start, end) of the bucket itself and of the local hour, day and month holding it."""
    local = from_epoch_ms(bucket_ms).astimezone(zone(timezone))
    hour = local.replace(minute=0, second=0, microsecond=0)  # keeps the fold: DST repeats stay apart
    hour_start = to_ms(hour.astimezone(UTC))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    day_start = local_to_utc(midnight, timezone)  # 01:00 where DST starts at midnight (Havana)
    month_first = midnight.replace(day=1)
    next_month = month_first.replace(year=month_first.year + month_first.month // 12, month=month_first.month % 12 + 1)
    return (
        (Granularity.QUARTER, bucket_ms, bucket_ms + BUCKET_MS),
        (Granularity.HOUR, hour_start, hour_start + HOUR_MS),
        (Granularity.DAY, to_ms(day_start), to_ms(local_to_utc(midnight + timedelta(days=1), timezone))),
        (Granularity.MONTH, to_ms(local_to_utc(month_first, timezone)), to_ms(local_to_utc(next_month, timezone))),
    )


def rollup_spans(
    hour_start: int, day_start: int, day_end: int, month_start: int, month_end: int
) -> tuple[WindowSpan, ...]:
    """A bucket's hour, day and month spans from their stored bounds (an hour ends an hour later)."""
    return (
        (Granularity.HOUR, hour_start, hour_start + HOUR_MS),
        (Granularity.DAY, day_start, day_end),
        (Granularity.MONTH, month_start, month_end),
    )


class WindowAccumulator:
    """Mutable running totals of one window, private to the operator's state; ``totals()`` gives the
    frozen value. Points are kept only for TIME_WEIGHTED_SUM, the one aggregation that needs the
    neighbours of an out-of-order event."""

    __slots__ = ("count", "first", "latest", "maximum", "points", "position", "total", "uniques")

    def __init__(self, keep_points: bool = False, keep_uniques: bool = False) -> None:
        self.position = -1
        """Source position (see ``observe``) of the last event counted; -1 when positions are not tracked."""
        self.count = 0
        self.total = Decimal(0)
        self.maximum: Decimal | None = None
        self.latest: Point | None = None
        self.first: Point | None = None
        self.points: list[Point] | None = [] if keep_points else None
        self.uniques: set[str] | None = set() if keep_uniques else None

    def observe(self, point: Point) -> None:
        self.count += 1
        value = point.value
        self.total = _add(self.total, value)  # in WIDE: the thread's 28 digits would round a large sum
        if self.maximum is None or value > self.maximum:
            self.maximum = value
        latest = self.latest
        if latest is None or point[:2] > latest[:2]:
            self.latest = point
        first = self.first
        if first is None or point[:2] < first[:2]:
            self.first = point
        if self.points is not None:
            bisect.insort(self.points, point)
        if self.uniques is not None and point.unique is not None:
            self.uniques.add(point.unique)

    @property
    def version(self) -> int:
        return self.count

    def totals(self) -> WindowTotals:
        integral = Decimal(0)
        if self.points:
            with localcontext(WIDE):
                for here, after in zip(self.points, self.points[1:], strict=False):
                    integral += here.value * (after.at_ms - here.at_ms)
        return WindowTotals(
            event_count=self.count,
            total=self.total,
            maximum=self.maximum,
            latest=self.latest,
            first=self.first,
            last=self.latest,
            tw_integral=integral,
            uniques=frozenset(self.uniques or ()),
        )

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot for a changelogged state store."""

        def point(p: Point | None) -> list[Any] | None:
            return None if p is None else [p.at_ms, p.key, str(p.value), p.unique]

        return {
            "position": self.position,
            "count": self.count,
            "total": str(self.total),
            "maximum": None if self.maximum is None else str(self.maximum),
            "latest": point(self.latest),
            "first": point(self.first),
            "points": None if self.points is None else [point(p) for p in self.points],
            "uniques": None if self.uniques is None else sorted(self.uniques),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowAccumulator:
        def point(raw: list[Any] | None) -> Point | None:
            return None if raw is None else Point(int(raw[0]), str(raw[1]), Decimal(raw[2]), raw[3])

        acc = cls()
        acc.position = int(state.get("position", -1))
        acc.count = int(state["count"])
        acc.total = Decimal(state["total"])
        acc.maximum = None if state["maximum"] is None else Decimal(state["maximum"])
        acc.latest = point(state["latest"])
        acc.first = point(state["first"])
        acc.points = None if state["points"] is None else [p for p in map(point, state["points"]) if p is not None]
        acc.uniques = None if state["uniques"] is None else set(state["uniques"])
        return acc


def new_accumulator(metric: Metric) -> WindowAccumulator:
    return WindowAccumulator(
        keep_points=metric.aggregation is Aggregation.TIME_WEIGHTED_SUM,
        keep_uniques=metric.aggregation is Aggregation.UNIQUE_COUNT,
    )


def observe(
    state: MutableMapping[WindowKey, WindowAccumulator],
    subscription_id: str,
    metric: Metric,
    timezone: str,
    point: Point,
    position: int = -1,
) -> tuple[WindowKey, tuple[WindowSpan, WindowSpan, WindowSpan, WindowSpan]]:
    """Add one accepted event to its 15-minute bucket; returns the bucket's key and the spans of
    the bucket and of its hour, day and month (what the bucket's row carries for the roll-ups).

    ``position`` is where the event sits in its source, growing in processing order (a Kafka
    driver uses offset × ``POSITIONS_PER_OFFSET`` + index in the message). A window that already
    reflects that position skips the event: after a crash, each window's state is whatever its
    last persisted snapshot was, so a redelivered event is counted exactly in the windows that
    missed it. -1 (the in-process driver) counts unconditionally."""
    spans = rollup_windows(point.at_ms - point.at_ms % BUCKET_MS, timezone)
    key = WindowKey(subscription_id, metric.code, Granularity.QUARTER, spans[0][1])
    accumulator = state.get(key)
    if accumulator is None:
        accumulator = state[key] = new_accumulator(metric)
    if position < 0 or position > accumulator.position:
        accumulator.observe(point)
        accumulator.position = position
    return key, spans
