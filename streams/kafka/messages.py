"""Kafka message values of the usage pipeline ↔ the operators' values, through the Avro contracts.

Reading never raises on bad input: an undecodable message becomes a Rejection naming why, so the
worker dead-letters it with its original bytes and goes on (design section 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rating.aggregations import Point, WindowTotals
from schemas import avro_codec
from streams.clickhouse.columns import (
    EVENT_SCHEMA,
    PRODUCED_AT,
    WINDOW_BATCH_SCHEMA,
    WINDOW_SCHEMA,
    event_records,
    event_table,
    window_rows,
    window_table,
)
from streams.operators.records import Reason, Rejection, UsageEvent, UsageRecord
from streams.operators.windows import Granularity, WindowKey, WindowSpan, rollup_spans
from streams.ports import DeadLetter, WindowRow

USAGE_EVENT = "usage_event.v2"
USAGE_EVENT_BATCH = "usage_event_batch.v1"
WINDOW_TOTAL = "window_total.v3"
WINDOW_BATCH = "window_batch.v1"
BATCH_MAX_ROWS = 2_000
BATCH_MAX_BYTES = 512 * 1024
"""A ``window_batch`` or ``usage_record_batch`` message holds at most this many rows and, unless a
single row is larger, this many bytes of Arrow IPC: far below the producer's and broker's 1 MB message limit."""
USAGE_RECORD = "usage_record.v1"
USAGE_RECORD_BATCH = "usage_record_batch.v1"
DEAD_LETTER = "dead_letter.v2"
MAX_LETTER_ORIGINAL = 262_144
"""Bytes of rejected input a dead letter carries at most: a letter must stay far below the producer's
message size limit (1 MB), whatever a producer sent."""
MAX_LETTER_DETAIL = 2_000


def _event(raw: dict[str, Any]) -> UsageEvent:
    return UsageEvent(
        raw["id"],
        raw["tenant_id"],
        raw["subscription_id"],
        raw["metric_code"],
        raw["value"],
        raw["recorded_at"],
        raw["idempotency_key"],
        raw.get("metadata") or {},
    )


def read_usage(value: bytes | None) -> list[UsageEvent | Rejection]:
    """The events of one ``usage.events`` message (one event, or a batch), in order; a message
    that cannot be read at all is a single Rejection."""
    if value is None:
        return [Rejection(Reason.UNDECODABLE, "message has no value (a tombstone?)")]
    try:
        writer = avro_codec.writer_schema_of(value)
        if writer.startswith("usage_event_batch."):
            return [_event(raw) for raw in avro_codec.decode(USAGE_EVENT_BATCH, value, epoch_ms=True)["events"]]
        if writer.startswith("usage_event."):
            return [_event(avro_codec.decode(USAGE_EVENT, value, epoch_ms=True))]
        return [Rejection(Reason.UNDECODABLE, f"a {writer} message is not a usage event")]
    except avro_codec.WireFormatError as error:
        return [Rejection(Reason.UNDECODABLE, str(error))]


def usage_event_avro(event: UsageEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "tenant_id": event.tenant_id,
        "subscription_id": event.subscription_id,
        "metric_code": event.metric_code,
        "value": event.value,
        "recorded_at": event.recorded_at_ms,
        "idempotency_key": event.idempotency_key,
        "metadata": dict(event.metadata),
    }


def write_record(record: UsageRecord) -> bytes:
    return avro_codec.encode(
        USAGE_RECORD,
        {
            "event_id": record.event_id,
            "tenant_id": record.tenant_id,
            "subscription_id": record.subscription_id,
            "metric_code": record.metric_code,
            "value": str(record.value),
            "recorded_at": record.recorded_at_ms,
            "idempotency_key": record.idempotency_key,
            "metadata": dict(record.metadata),
            "unique_value": record.unique,
        },
        epoch_ms=True,
    )


def read_record(value: bytes) -> UsageRecord:
    raw = avro_codec.decode(USAGE_RECORD, value, epoch_ms=True)
    return UsageRecord(
        raw["event_id"],
        raw["tenant_id"],
        raw["subscription_id"],
        raw["metric_code"],
        Decimal(raw["value"]),
        raw["recorded_at"],
        raw["idempotency_key"],
        raw["metadata"],
        raw["unique_value"],
    )


def write_record_batches(records: Sequence[UsageRecord]) -> list[bytes]:
    """``usage.accepted`` messages (``usage_record_batch.v1``) holding ``records`` in order: the
    Arrow columns of ``usage_events`` built once, cut as ``window_batch`` messages are."""
    return [value for value, _ in _batches(event_table(records), USAGE_RECORD_BATCH)]


def is_record_batch(value: bytes) -> bool:
    """Whether a ``usage.accepted`` value is a batch (``usage_record_batch``), not one ``usage_record``."""
    return avro_codec.writer_schema_of(value).startswith("usage_record_batch.")


def read_record_batch(value: bytes) -> pa.Table:
    """The rows of a ``usage_record_batch`` message as written: ``EVENT_SCHEMA`` (usage_events'
    columns). Raises WireFormatError on anything else."""
    return _batch_table(USAGE_RECORD_BATCH, value, EVENT_SCHEMA, "usage_events'")


def read_records(value: bytes) -> list[UsageRecord]:
    """The records of any ``usage.accepted`` message: a batch, or one record of an older worker."""
    if is_record_batch(value):
        return event_records(read_record_batch(value))
    return [read_record(value)]


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def write_window(row: WindowRow) -> bytes:
    t = row.totals
    first, latest = t.first, t.latest
    return avro_codec.encode(
        WINDOW_TOTAL,
        {
            "subscription_id": row.key.subscription_id,
            "tenant_id": row.tenant_id,
            "metric_code": row.key.metric_code,
            "granularity": str(row.key.granularity),
            "window_start": row.key.start_ms,
            "window_end": row.end_ms,
            "version": row.version,
            "event_count": t.event_count,
            "sum": str(t.total),
            "max": None if t.maximum is None else str(t.maximum),
            "latest_at": None if latest is None else latest.at_ms,
            "latest_key": None if latest is None else latest.key,
            "latest_value": None if latest is None else str(latest.value),
            "latest_unique": None if latest is None else latest.unique,
            "first_at": None if first is None else first.at_ms,
            "first_key": None if first is None else first.key,
            "first_value": None if first is None else str(first.value),
            "first_unique": None if first is None else first.unique,
            "last_at": None if latest is None else latest.at_ms,
            "last_value": None if latest is None else str(latest.value),
            "tw_integral": str(t.tw_integral),
            "uniques": sorted(t.uniques),
            "rollups": _rollup_fields(row.rollups),
        },
        epoch_ms=True,
    )


ROLLUP_FIELDS = ("hour_start", "day_start", "day_end", "month_start", "month_end")
"""A bucket's roll-up bounds in ``window_total.v3``'s ``rollups`` record (an hour ends an hour later)."""


def _rollup_fields(rollups: tuple[WindowSpan, ...]) -> dict[str, int] | None:
    if not rollups:
        return None
    (_, hour, _), (_, day, day_end), (_, month, month_end) = rollups
    return dict(zip(ROLLUP_FIELDS, (hour, day, day_end, month, month_end), strict=True))


def _rollups_of(raw: dict[str, Any]) -> tuple[WindowSpan, ...]:
    """The roll-up spans of a v3 bucket; () for a v1/v2 row, which carried none."""
    bounds = raw.get("rollups")
    if bounds is None:
        return ()
    return rollup_spans(*(bounds[name] for name in ROLLUP_FIELDS))


def read_window(value: bytes) -> WindowRow:
    raw = avro_codec.decode(WINDOW_TOTAL, value, epoch_ms=True)
    latest = first = None
    if raw["latest_at"] is not None:
        latest = Point(raw["latest_at"], raw["latest_key"] or "", Decimal(raw["latest_value"]), raw["latest_unique"])
    if raw["first_at"] is not None:
        first = Point(raw["first_at"], raw["first_key"] or "", Decimal(raw["first_value"]), raw["first_unique"])
    totals = WindowTotals(
        event_count=raw["event_count"],
        total=Decimal(raw["sum"]),
        maximum=_decimal(raw["max"]),
        latest=latest,
        first=first,
        last=latest,
        tw_integral=Decimal(raw["tw_integral"]),
        uniques=frozenset(raw["uniques"]),
    )
    key = WindowKey(raw["subscription_id"], raw["metric_code"], Granularity(raw["granularity"]), raw["window_start"])
    return WindowRow(key, raw["tenant_id"], raw["window_end"], raw["version"], totals, _rollups_of(raw))


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _batches(table: pa.Table, schema_name: str) -> list[tuple[bytes, pa.Table]]:
    """``table`` as ``{row_count, arrow_ipc}`` messages of ``schema_name``, each with its rows: parts
    of at most ``BATCH_MAX_ROWS`` rows, a part over ``BATCH_MAX_BYTES`` of IPC split in halves (a
    single larger row goes alone)."""
    parts = [table.slice(start, BATCH_MAX_ROWS) for start in range(0, table.num_rows, BATCH_MAX_ROWS)]
    out: list[tuple[bytes, pa.Table]] = []
    while parts:
        part = parts.pop(0)
        ipc = _ipc(part)
        if len(ipc) > BATCH_MAX_BYTES and part.num_rows > 1:
            half = part.num_rows // 2
            parts[:0] = [part.slice(0, half), part.slice(half)]
            continue
        out.append((avro_codec.encode(schema_name, {"row_count": part.num_rows, "arrow_ipc": ipc}), part))
    return out


def _batch_table(schema_name: str, value: bytes, columns: pa.Schema, what: str) -> pa.Table:
    """The Arrow table of a ``{row_count, arrow_ipc}`` message, checked to have exactly ``columns``
    and ``row_count`` rows; WireFormatError on anything else."""
    raw = avro_codec.decode(schema_name, value)
    name = schema_name.split(".")[0]
    try:
        table = pa.ipc.open_stream(pa.py_buffer(raw["arrow_ipc"])).read_all()
    except (pa.ArrowException, ValueError) as error:
        raise avro_codec.WireFormatError(f"{name}: unreadable Arrow IPC stream: {error}") from error
    if not table.schema.equals(columns):
        raise avro_codec.WireFormatError(f"{name}: columns {table.schema} are not {what} ({columns})")
    if table.num_rows != raw["row_count"]:
        raise avro_codec.WireFormatError(f"{name}: {table.num_rows} rows, row_count says {raw['row_count']}")
    return table


def write_window_batches(
    rows: Sequence[WindowRow], produced_at: Sequence[int | None]
) -> list[tuple[bytes, int | None]]:
    """``usage.windows`` messages (``window_batch.v1``) holding ``rows``, each with the newest of
    its rows' ``produced_at`` (the Kafka timestamp to give the message). The Arrow columns are
    built once; a part over ``BATCH_MAX_ROWS`` rows or ``BATCH_MAX_BYTES`` is split in halves."""
    return [
        (value, pc.max(part.column(PRODUCED_AT)).cast(pa.int64()).as_py())
        for value, part in _batches(window_table(rows, produced_at), WINDOW_BATCH)
    ]


def is_window_batch(value: bytes) -> bool:
    """Whether a ``usage.windows`` value is a batch (``window_batch``), not one ``window_total`` row."""
    return avro_codec.writer_schema_of(value).startswith("window_batch.")


def read_window_batch(value: bytes) -> pa.Table:
    """The rows of a ``window_batch`` message as written: ``WINDOW_BATCH_SCHEMA`` (usage_windows'
    columns and ``produced_at``). Raises WireFormatError on anything else."""
    return _batch_table(WINDOW_BATCH, value, WINDOW_BATCH_SCHEMA, "usage_windows' and produced_at")


def without_stamps(table: pa.Table) -> pa.Table:
    """A batch's table as the store inserts it: usage_windows' columns alone."""
    return table.select(WINDOW_SCHEMA.names)


def read_windows(value: bytes) -> list[WindowRow]:
    """The rows of any ``usage.windows`` message: a batch, or one row of an older worker."""
    if is_window_batch(value):
        return window_rows(read_window_batch(value))
    return [read_window(value)]


def write_dead_letter(
    letter: DeadLetter, failed_at_ms: int, original_key: bytes | None, event_index: int | None = None
) -> bytes:
    """A usage pipeline's letter as its Avro value, bounded (see ``encode_dead_letter``)."""
    rejection = letter.rejection
    return encode_dead_letter(
        str(rejection.reason),
        rejection.detail,
        letter.original,
        letter.source_topic,
        letter.source_partition,
        letter.source_offset,
        failed_at_ms,
        rejection.field,
        original_key,
        event_index,
    )


def encode_dead_letter(
    reason: str,
    detail: str,
    original: bytes,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    failed_at_ms: int,
    field: str | None = None,
    original_key: bytes | None = None,
    event_index: int | None = None,
) -> bytes:
    """Any worker's letter (usage.dlq, rating.dlq), bounded whatever a producer sent: at most
    ``MAX_LETTER_ORIGINAL`` bytes of the rejected input (a cut original is marked
    ``original_truncated``, its full size in ``original_size``) and short texts, so a letter always
    fits the producer's message size limit."""
    return avro_codec.encode(
        DEAD_LETTER,
        {
            "reason": reason[:MAX_LETTER_DETAIL],
            "detail": detail[:MAX_LETTER_DETAIL],
            "original": original[:MAX_LETTER_ORIGINAL],
            "source_topic": source_topic[:MAX_LETTER_DETAIL],
            "source_partition": source_partition,
            "source_offset": source_offset,
            "failed_at": failed_at_ms,
            "field": None if field is None else field[:MAX_LETTER_DETAIL],
            "original_key": None if original_key is None else original_key[:MAX_LETTER_DETAIL],
            "original_truncated": len(original) > MAX_LETTER_ORIGINAL,
            "original_size": len(original),
            "event_index": event_index,
        },
    )


def single_event(event: UsageEvent) -> bytes:
    """``event`` alone as a ``usage.events`` message: what a dead letter carries for one event of a
    batch, so that replaying it re-injects that event and nothing else."""
    return avro_codec.encode(USAGE_EVENT, usage_event_avro(event))


def read_dead_letter(value: bytes) -> dict[str, Any]:
    return avro_codec.decode(DEAD_LETTER, value)
