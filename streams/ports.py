"""Ports of the streaming side: where usage is stored and where rejected events go."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from rating.aggregations import SummedTotals, WindowTotals
from streams.operators.intervals import UsageQuery
from streams.operators.records import Rejection, UsageRecord
from streams.operators.windows import Granularity, WindowKey, WindowSpan


class WindowRow(NamedTuple):
    """One window's absolute totals at a version (its count of distinct events). Writing an older
    or equal version again changes nothing, so replays are idempotent. A written row is a
    15-minute bucket carrying the (granularity, start, end) of the hour, day and month it rolls up
    into; a roll-up read back from a store carries none."""

    key: WindowKey
    tenant_id: str
    end_ms: int
    version: int
    totals: WindowTotals
    rollups: tuple[WindowSpan, ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected event with its original bytes and where it came from."""

    rejection: Rejection
    original: bytes
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1


class UsageStore(Protocol):
    """Raw distinct events and window aggregates. Every write is idempotent."""

    def write(self, records: Sequence[UsageRecord], windows: Sequence[WindowRow]) -> None:
        """Store accepted events (keyed by dedup identity) and the newest versions of buckets; a
        row of another granularity is a ValueError (roll-ups are folded from buckets, not written)."""
        ...

    def totals(self, queries: Sequence[UsageQuery]) -> list[WindowTotals]:
        """Exact totals of each query's ``[start, end)``, in the order asked."""
        ...

    def summed(self, queries: Sequence[UsageQuery]) -> list[SummedTotals]:
        """The event count, total and maximum of each query's ``[start, end)``, in the order asked:
        the same fields as ``totals`` gives, for a store that can add them up for less work."""
        ...

    def windows(
        self, subscription_id: str, metric_code: str, granularity: Granularity, start_ms: int, end_ms: int
    ) -> list[WindowRow]:
        """The newest version of each window starting in ``[start, end)``, in time order: buckets
        as written, hours, days and months folded from them (version = distinct events)."""
        ...


class DeadLetterSink(Protocol):
    def publish(self, letters: Sequence[DeadLetter]) -> None: ...
