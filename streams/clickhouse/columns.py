"""Rows of the usage tables as Arrow columns, in the tables' order and types (schema.sql).

Each column is built from one Python list in a single pyarrow call, so the cost per value is a
list append, not a serializer call. Decimals keep their exact value: pyarrow refuses a value
with more than the column's 12 fractional digits instead of rounding it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Context, Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rating.aggregations import Point, WindowTotals
from streams.operators.records import UsageRecord
from streams.operators.windows import Granularity, WindowKey, rollup_spans
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


EVENT_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("subscription_id", pa.string()),
        ("metric_code", pa.string()),
        ("idempotency_key", pa.string()),
        ("event_id", pa.string()),
        ("value", AMOUNT),
        ("recorded_at", INSTANT),
        ("metadata", TEXT_MAP),
        ("unique_value", pa.string()),
    ]
)
"""What ``event_columns`` builds, as a table: the columns of ``usage_events`` in its order (what a
``usage.accepted`` batch message carries)."""
EVENT_IDENTITY = ("subscription_id", "metric_code", "idempotency_key")
"""The columns that fix an event row's content (first write wins): what its insert token digests."""
_EXACT = Context(prec=40)
"""Enough digits for any column decimal (38): the ambient context's 28 would round."""
_EVENT_REQUIRED = ("tenant_id", "subscription_id", "metric_code", "idempotency_key", "event_id", "value", "recorded_at")


def event_table(records: Sequence[UsageRecord]) -> pa.Table:
    """``event_columns`` as a table of ``EVENT_SCHEMA``."""
    if not records:
        return EVENT_SCHEMA.empty_table()
    return pa.table(event_columns(records), schema=EVENT_SCHEMA)


def _check_columns(table: pa.Table, schema: pa.Schema, what: str, whose: str) -> None:
    """A ValueError naming the first difference unless ``table`` has exactly ``schema``'s columns."""
    if table.schema.names != schema.names:
        raise ValueError(f"{what} columns {table.schema.names} are not {whose} {schema.names}")
    for field in schema:
        got = table.schema.field(field.name).type
        if got != field.type:
            raise ValueError(f"{what} column {field.name} is {got}, expected {field.type}")


def check_event_table(table: pa.Table) -> None:
    """A ValueError naming what is wrong unless ``table`` is accepted records in ``EVENT_SCHEMA``
    with every identity and payload column filled (only ``unique_value`` may be null)."""
    _check_columns(table, EVENT_SCHEMA, "event table", "usage_events'")
    for name in (*_EVENT_REQUIRED, "metadata"):
        if table.column(name).null_count:
            raise ValueError(f"event table column {name} has nulls")


def _plain(value: Decimal) -> Decimal:
    """A column's decimal (12 fractional digits) as the operators make one: a whole number without
    a fraction, any other without trailing zeros (``1.500000000000`` → ``1.5``, ``3.000…`` → ``3``).
    The one value of other digits: a whole double of 2**53 or more, which the operators keep as
    ``1E+20``, comes back equal as ``100000000000000000000``."""
    whole = value.to_integral_value(context=_EXACT)
    return whole if whole == value else value.normalize(_EXACT)


def event_records(table: pa.Table) -> list[UsageRecord]:
    """The rows of an event table as records (the inverse of ``event_table``): for stores that keep
    Python values, the rater and ``rebuild-usage``. Values come back equal to those written, and
    with the same digits for every value the operators produce (``_plain``)."""
    check_event_table(table)
    text = {name: table.column(name).to_pylist() for name in EVENT_SCHEMA.names if name != "recorded_at"}
    recorded = _ms(table, "recorded_at")
    return [
        UsageRecord(
            text["event_id"][i],
            text["tenant_id"][i],
            text["subscription_id"][i],
            text["metric_code"][i],
            _plain(text["value"][i]),
            recorded[i],
            text["idempotency_key"][i],
            dict(text["metadata"][i]),
            text["unique_value"][i],
        )
        for i in range(table.num_rows)
    ]


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


WINDOW_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("subscription_id", pa.string()),
        ("metric_code", pa.string()),
        ("granularity", pa.string()),
        ("window_start", INSTANT),
        ("window_end", INSTANT),
        ("version", pa.uint64()),
        ("event_count", pa.uint64()),
        ("total", AMOUNT),
        ("maximum", AMOUNT),
        *(
            (f"{point}_{part}", kind)
            for point in ("latest", "first")
            for part, kind in (("at", INSTANT), ("key", pa.string()), ("value", AMOUNT), ("unique", pa.string()))
        ),
        ("tw_integral", INTEGRAL),
        ("uniques", pa.list_(pa.string())),
        *((name, INSTANT) for name in ("hour_start", "day_start", "day_end", "month_start", "month_end")),
    ]
)
"""What ``window_columns`` builds, as a table: the columns of ``usage_windows`` in its order."""
PRODUCED_AT = "produced_at"
"""The extra column of a ``window_batch`` message: per row, the Kafka timestamp (ms) of the newest
source message that changed it (event→queryable latency); never inserted."""
WINDOW_BATCH_SCHEMA = WINDOW_SCHEMA.append(pa.field(PRODUCED_AT, INSTANT))
WINDOW_IDENTITY = ("subscription_id", "metric_code", "granularity", "window_start", "window_end", "version")
"""The columns that fix a bucket row's content (its key and version): what its insert token digests."""
ROLLUP_COLUMNS = ("hour_start", "day_start", "day_end", "month_start", "month_end")


def window_table(windows: Sequence[WindowRow], produced_at: Sequence[int | None] | None = None) -> pa.Table:
    """``window_columns`` as a table of ``WINDOW_SCHEMA``; with ``produced_at`` (one per row), of
    ``WINDOW_BATCH_SCHEMA``: what a ``usage.windows`` batch message carries."""
    columns = window_columns(windows) if windows else {f.name: pa.array([], f.type) for f in WINDOW_SCHEMA}
    if produced_at is None:
        return pa.table(columns, schema=WINDOW_SCHEMA)
    return pa.table({**columns, PRODUCED_AT: pa.array(produced_at, INSTANT)}, schema=WINDOW_BATCH_SCHEMA)


def check_window_table(table: pa.Table) -> None:
    """A ValueError naming what is wrong unless ``table`` is bucket rows in ``WINDOW_SCHEMA``, each
    with its hour, day and month (roll-ups are folded from buckets, never written)."""
    _check_columns(table, WINDOW_SCHEMA, "window table", "usage_windows'")
    for name in ("subscription_id", "metric_code", "granularity", "window_start", "window_end", "version", "total"):
        if table.column(name).null_count:
            raise ValueError(f"window table column {name} has nulls")
    if table.num_rows and not pc.all(pc.equal(table.column("granularity"), str(Granularity.QUARTER))).as_py():
        raise ValueError(
            "window table column granularity: only 15-minute buckets with their hour, day and month are "
            "written; roll-ups are folded from them (usage_rollups)"
        )
    for name in ROLLUP_COLUMNS:
        if table.column(name).null_count:
            raise ValueError(f"window table column {name}: every bucket must carry its hour, day and month")


def _ms(table: pa.Table, name: str) -> list[Any]:
    values: list[Any] = table.column(name).cast(pa.int64()).to_pylist()
    return values


def window_rows(table: pa.Table) -> list[WindowRow]:
    """The rows of a window table (the inverse of ``window_table``): for stores that keep Python
    values (the memory store) and readers of ``usage.windows`` that want rows, not columns.
    Decimals come back with the columns' 12 fractional digits (equal, not identical, to the
    values written)."""
    check_window_table(table.select(WINDOW_SCHEMA.names) if PRODUCED_AT in table.schema.names else table)
    instant_columns = ("window_start", "window_end", "latest_at", "first_at", *ROLLUP_COLUMNS)
    instants = {name: _ms(table, name) for name in instant_columns}
    text = {name: table.column(name).to_pylist() for name in WINDOW_SCHEMA.names if name not in instant_columns}
    rows = []
    for i in range(table.num_rows):
        latest = first = None
        if instants["latest_at"][i] is not None:
            latest = Point(
                instants["latest_at"][i], text["latest_key"][i] or "", text["latest_value"][i], text["latest_unique"][i]
            )
        if instants["first_at"][i] is not None:
            first = Point(
                instants["first_at"][i], text["first_key"][i] or "", text["first_value"][i], text["first_unique"][i]
            )
        totals = WindowTotals(
            event_count=text["event_count"][i],
            total=text["total"][i],
            maximum=text["maximum"][i],
            latest=latest,
            first=first,
            last=latest,
            tw_integral=text["tw_integral"][i],
            uniques=frozenset(text["uniques"][i]),
        )
        key = WindowKey(
            text["subscription_id"][i],
            text["metric_code"][i],
            Granularity(text["granularity"][i]),
            instants["window_start"][i],
        )
        rollups = rollup_spans(*(instants[name][i] for name in ROLLUP_COLUMNS))
        rows.append(
            WindowRow(key, text["tenant_id"][i], instants["window_end"][i], text["version"][i], totals, rollups)
        )
    return rows
