"""Ports of the streaming side: where usage is stored and where rejected events go."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple, Protocol

from rating.aggregations import SummedTotals, WindowTotals
from streams.operators.intervals import UsageQuery
from streams.operators.records import Rejection, UsageRecord
from streams.operators.windows import Granularity, WindowKey, WindowSpan

if TYPE_CHECKING:
    import pyarrow as pa


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

    def write_event_table(self, table: pa.Table) -> None:
        """Store accepted records given as Arrow columns (``streams.clickhouse.columns.EVENT_SCHEMA``:
        what a ``usage.accepted`` batch message carries) with ``write``'s contract: a record whose
        identity is stored already changes nothing; a bad column is a ValueError and nothing is stored."""
        ...

    def write_window_table(self, table: pa.Table) -> None:
        """Store bucket rows given as Arrow columns (``streams.clickhouse.columns.WINDOW_SCHEMA``:
        what a ``usage.windows`` batch message carries) with ``write``'s contract: older versions
        of a bucket, in the table or stored, change nothing; a bad column or a row that is not a
        bucket with its roll-ups is a ValueError and nothing is stored."""
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


class StoredEvent(NamedTuple):
    """One distinct stored usage event, as ``UsageService.ListUsage`` lists it."""

    tenant_id: str
    subscription_id: str
    metric_code: str
    recorded_at_ms: int
    idempotency_key: str
    event_id: str
    value: Decimal
    metadata: Mapping[str, str]

    @property
    def cursor(self) -> tuple[int, str, str]:
        """Its place in the listing order: (recorded_at_ms, metric_code, idempotency_key)."""
        return (self.recorded_at_ms, self.metric_code, self.idempotency_key)


class EventLog(Protocol):
    def events(
        self,
        subscription_id: str,
        metric_code: str | None,
        start_ms: int,
        end_ms: int,
        after: tuple[int, str, str] | None,
        limit: int,
    ) -> list[StoredEvent]:
        """Distinct events of the subscription recorded in ``[start_ms, end_ms)`` (of one metric
        when given), in ``cursor`` order, strictly after ``after``; at most ``limit``."""
        ...
