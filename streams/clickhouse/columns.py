"""Rows of the usage tables as Arrow columns, in the tables' order and types (schema.sql).

Each column is built from one Python list in a single pyarrow call, so the cost per value is a
list append, not a serializer call. Decimals keep their exact value: pyarrow refuses a value
with more than the column's 12 fractional digits instead of rounding it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import pyarrow as pa

from rating.aggregations import Point
from streams.operators.records import UsageRecord
from streams.ports import WindowRow

INSTANT = pa.timestamp("ms", tz="UTC")
"""DateTime64(3, 'UTC'): epoch milliseconds."""
AMOUNT = pa.decimal128(38, 12)
"""Decimal128(12)."""
INTEGRAL = pa.decimal256(76, 12)
"""Decimal256(12): tw_integral."""
TEXT_MAP = pa.map_(pa.string(), pa.string())


def text_map(mappings: Iterable[dict[str, str]]) -> pa.Array:
    """Map(String, String) from flat keys, values and offsets (a list of item lists is 10x slower)."""
    offsets, keys, values = [0], list[str](), list[str]()
    for mapping in mappings:
        keys.extend(mapping)
        values.extend(mapping.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string())
    )


def event_columns(records: Sequence[UsageRecord]) -> dict[str, pa.Array]:
    """``usage_events``' columns of accepted records."""
    return {
        "tenant_id": pa.array([r.tenant_id for r in records], pa.string()),
        "subscription_id": pa.array([r.subscription_id for r in records], pa.string()),
        "metric_code": pa.array([r.metric_code for r in records], pa.string()),
        "idempotency_key": pa.array([r.idempotency_key for r in records], pa.string()),
        "event_id": pa.array([r.event_id for r in records], pa.string()),
        "value": pa.array([r.value for r in records], AMOUNT),
        "recorded_at": pa.array([r.recorded_at_ms for r in records], INSTANT),
        "metadata": text_map(dict(r.metadata) for r in records),
        "unique_value": pa.array([r.unique for r in records], pa.string()),
    }


def _point_columns(prefix: str, points: list[Point | None]) -> dict[str, pa.Array]:
    """The four parts of a nullable point (first or latest)."""
    return {
        f"{prefix}_at": pa.array([None if p is None else p.at_ms for p in points], INSTANT),
        f"{prefix}_key": pa.array([None if p is None else p.key for p in points], pa.string()),
        f"{prefix}_value": pa.array([None if p is None else p.value for p in points], AMOUNT),
        f"{prefix}_unique": pa.array([None if p is None else p.unique for p in points], pa.string()),
    }


def window_columns(windows: Sequence[WindowRow]) -> dict[str, pa.Array]:
    """``usage_windows``' columns of 15-minute buckets, each with its hour, day and month."""
    totals = [w.totals for w in windows]
    hours, days, months = zip(*(w.rollups for w in windows), strict=True)
    maxima: list[Decimal | None] = [t.maximum for t in totals]
    return {
        "tenant_id": pa.array([w.tenant_id for w in windows], pa.string()),
        "subscription_id": pa.array([w.key.subscription_id for w in windows], pa.string()),
        "metric_code": pa.array([w.key.metric_code for w in windows], pa.string()),
        "granularity": pa.array([str(w.key.granularity) for w in windows], pa.string()),
        "window_start": pa.array([w.key.start_ms for w in windows], INSTANT),
        "window_end": pa.array([w.end_ms for w in windows], INSTANT),
        "version": pa.array([w.version for w in windows], pa.uint64()),
        "event_count": pa.array([t.event_count for t in totals], pa.uint64()),
        "total": pa.array([t.total for t in totals], AMOUNT),
        "maximum": pa.array(maxima, AMOUNT),
        **_point_columns("latest", [t.latest for t in totals]),
        **_point_columns("first", [t.first for t in totals]),
        "tw_integral": pa.array([t.tw_integral for t in totals], INTEGRAL),
        "uniques": pa.array([sorted(t.uniques) for t in totals], pa.list_(pa.string())),
        "hour_start": pa.array([span[1] for span in hours], INSTANT),
        "day_start": pa.array([span[1] for span in days], INSTANT),
        "day_end": pa.array([span[2] for span in days], INSTANT),
        "month_start": pa.array([span[1] for span in months], INSTANT),
        "month_end": pa.array([span[2] for span in months], INSTANT),
    }
