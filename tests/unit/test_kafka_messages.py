"""The Kafka message values of the pipeline round-trip the operators' values exactly, and bad bytes
become rejections, never exceptions."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from rating.aggregations import Point, WindowTotals
from schemas import avro_codec
from streams.clickhouse.columns import WINDOW_SCHEMA, event_table, window_table
from streams.ingest.partitioning import partition_of
from streams.kafka import messages
from streams.operators.records import Reason, Rejection, UsageEvent, UsageRecord
from streams.operators.windows import Granularity, WindowKey, rollup_windows
from streams.ports import DeadLetter, WindowRow

pytestmark = pytest.mark.unit


def test_window_rows_round_trip_exactly() -> None:
    totals = WindowTotals(
        event_count=3,
        total=Decimal("123456789012345.000000000001"),
        maximum=Decimal("0.5"),
        latest=Point(1_700_000_000_123, "k3", Decimal("0.5"), "u2"),
        first=Point(1_700_000_000_000, "k1", Decimal("-1.25"), None),
        last=Point(1_700_000_000_123, "k3", Decimal("0.5"), "u2"),
        tw_integral=Decimal("-153.75"),
        uniques=frozenset({"u1", "u2"}),
    )
    start = 1_699_999_200_000
    spans = rollup_windows(start, "Asia/Kathmandu")  # a +05:45 zone: the hour starts at :15
    row = WindowRow(WindowKey("s1", "m", Granularity.QUARTER, start), "t1", start + 900_000, 3, totals, spans[1:])
    assert messages.read_window(messages.write_window(row)) == row
    assert row.rollups[0][1] % 3_600_000 == 15 * 60_000


def test_empty_window_round_trips() -> None:
    row = WindowRow(WindowKey("s1", "m", Granularity.QUARTER, 0), "t1", 900_000, 0, WindowTotals())
    assert messages.read_window(messages.write_window(row)) == row


def bucket(subscription: str, start: int = 1_699_999_200_000, version: int = 3, uniques: int = 2) -> WindowRow:
    totals = WindowTotals(
        event_count=version,
        total=Decimal("123456789012345.000000000001"),
        maximum=Decimal("0.5"),
        latest=Point(start + 123, "k3", Decimal("0.5"), "u2"),
        first=Point(start, "k1", Decimal("-1.25"), None),
        last=Point(start + 123, "k3", Decimal("0.5"), "u2"),
        tw_integral=Decimal("-153.75"),
        uniques=frozenset(f"user-{n:06d}" for n in range(uniques)),
    )
    spans = rollup_windows(start, "Asia/Kathmandu")
    return WindowRow(
        WindowKey(subscription, "m", Granularity.QUARTER, start), "t1", start + 900_000, version, totals, spans[1:]
    )


def test_window_batches_round_trip_every_row_exactly_with_its_stamp() -> None:
    rows = [bucket("s1"), bucket("s2", version=0)._replace(totals=WindowTotals()), bucket("s3", version=7)]
    [(value, newest)] = messages.write_window_batches(rows, [5, None, 9])
    assert avro_codec.writer_schema_of(value) == "window_batch.v1" and messages.is_window_batch(value)
    assert newest == 9  # the message's Kafka timestamp: the newest source message among its rows
    assert messages.read_windows(value) == rows
    table = messages.read_window_batch(value)
    assert table.column("produced_at").cast(pa.int64()).to_pylist() == [5, None, 9]
    assert messages.without_stamps(table).schema.equals(WINDOW_SCHEMA)
    assert messages.without_stamps(table).equals(window_table(rows))  # exactly what the store inserts


def test_a_chunk_of_many_buckets_is_split_by_rows_and_by_bytes_and_loses_none() -> None:
    rows = [bucket(f"s{n}", version=n + 1, uniques=0) for n in range(4_500)]
    out = messages.write_window_batches(rows, list(range(4_500)))
    tables = [messages.read_window_batch(value) for value, _ in out]
    assert [t.num_rows for t in tables] == [2_000, 2_000, 500]
    assert [newest for _, newest in out] == [1_999, 3_999, 4_499]
    assert [row for value, _ in out for row in messages.read_windows(value)] == rows

    wide = [bucket(f"s{n}", uniques=400) for n in range(150)]  # UNIQUE_COUNT buckets of ~6 KiB each
    out = messages.write_window_batches(wide, [1] * 150)
    assert len(out) == 2 and all(len(value) <= messages.BATCH_MAX_BYTES + 100 for value, _ in out)
    assert [row for value, _ in out for row in messages.read_windows(value)] == wide


def test_no_changed_bucket_is_no_window_message() -> None:
    assert messages.write_window_batches([], []) == []


def test_an_old_single_row_message_still_reads_as_rows() -> None:
    row = bucket("s1")
    assert messages.read_windows(messages.write_window(row)) == [row]
    assert not messages.is_window_batch(messages.write_window(row))


def test_a_batch_whose_bytes_are_not_usage_windows_columns_is_a_wire_format_error() -> None:
    good = messages.read_window_batch(messages.write_window_batches([bucket("s1")], [1])[0][0])
    garbage = avro_codec.encode(messages.WINDOW_BATCH, {"row_count": 1, "arrow_ipc": b"not arrow"})
    with pytest.raises(avro_codec.WireFormatError, match="unreadable Arrow IPC"):
        messages.read_window_batch(garbage)
    sink = pa.BufferOutputStream()
    other = good.drop_columns(["uniques"])
    with pa.ipc.new_stream(sink, other.schema) as writer:
        writer.write_table(other)
    wrong = avro_codec.encode(messages.WINDOW_BATCH, {"row_count": 1, "arrow_ipc": sink.getvalue().to_pybytes()})
    with pytest.raises(avro_codec.WireFormatError, match="not usage_windows' and produced_at"):
        messages.read_window_batch(wrong)
    short = avro_codec.encode(messages.WINDOW_BATCH, {"row_count": 2, "arrow_ipc": messages._ipc(good)})
    with pytest.raises(avro_codec.WireFormatError, match="1 rows, row_count says 2"):
        messages.read_window_batch(short)


def test_a_window_batch_on_the_events_topic_is_rejected_not_misread() -> None:
    [(value, _)] = messages.write_window_batches([bucket("s1")], [1])
    [item] = messages.read_usage(value)
    assert isinstance(item, Rejection) and "not a usage event" in item.detail


def test_records_round_trip_exactly() -> None:
    record = UsageRecord("e1", "t1", "s1", "m", Decimal("0.000000000001"), 1_700_000_000_001, "k1", {"a": "b"}, "b")
    assert messages.read_record(messages.write_record(record)) == record


def records_of(count: int, metadata: int = 1) -> list[UsageRecord]:
    """Accepted records as the operators make them: exact values of every shape they produce."""
    values = [
        Decimal(7),
        Decimal("1E-12"),
        Decimal("-1.5"),
        Decimal("99999999999999999999999999.999999999999"),
        Decimal(0),
    ]
    return [
        UsageRecord(
            f"e{n}",
            "t1",
            f"s{n % 7}",
            "m",
            values[n % len(values)],
            1_700_000_000_000 + n,
            f"k{n}",
            {f"key{i}": f"v{n}-{i}" * (1 + i) for i in range(metadata)},
            None if n % 3 else f"u{n}",
        )
        for n in range(count)
    ]


def test_record_batches_round_trip_every_record_exactly_in_order() -> None:
    records = [*records_of(5), records_of(1, metadata=0)[0]._replace(event_id="e-empty", idempotency_key="k-empty")]
    [value] = messages.write_record_batches(records)
    assert avro_codec.writer_schema_of(value) == "usage_record_batch.v1" and messages.is_record_batch(value)
    read = messages.read_records(value)
    assert read == records
    assert [str(r.value) for r in read] == [str(r.value) for r in records]  # the same digits, not only equal
    assert [r.fingerprint for r in read] == [r.fingerprint for r in records]  # so a replay is a duplicate
    assert messages.read_record_batch(value).equals(event_table(records))  # exactly what the store inserts


def test_a_chunk_of_many_records_is_split_by_rows_and_by_bytes_and_loses_none() -> None:
    records = records_of(4_500)
    out = messages.write_record_batches(records)
    assert [messages.read_record_batch(value).num_rows for value in out] == [2_000, 2_000, 500]
    assert [r for value in out for r in messages.read_records(value)] == records

    wide = records_of(150, metadata=32)  # the most metadata an event may carry: ~17 KiB each
    out = messages.write_record_batches(wide)
    assert len(out) > 1 and all(len(value) <= messages.BATCH_MAX_BYTES + 100 for value in out)
    assert [r for value in out for r in messages.read_records(value)] == wide


def test_no_accepted_record_is_no_accepted_message() -> None:
    assert messages.write_record_batches([]) == []


def test_an_old_single_record_message_still_reads_as_records() -> None:
    [record] = records_of(1)
    assert messages.read_records(messages.write_record(record)) == [record]
    assert not messages.is_record_batch(messages.write_record(record))


def test_a_record_batch_whose_bytes_are_not_usage_events_columns_is_a_wire_format_error() -> None:
    good = messages.read_record_batch(messages.write_record_batches(records_of(1))[0])
    garbage = avro_codec.encode(messages.USAGE_RECORD_BATCH, {"row_count": 1, "arrow_ipc": b"not arrow"})
    with pytest.raises(avro_codec.WireFormatError, match="unreadable Arrow IPC"):
        messages.read_records(garbage)
    other = good.set_column(5, "value", good.column("value").cast(pa.string()))  # a string value column
    wrong = avro_codec.encode(messages.USAGE_RECORD_BATCH, {"row_count": 1, "arrow_ipc": messages._ipc(other)})
    with pytest.raises(avro_codec.WireFormatError, match="not usage_events'"):
        messages.read_records(wrong)
    short = avro_codec.encode(messages.USAGE_RECORD_BATCH, {"row_count": 2, "arrow_ipc": messages._ipc(good)})
    with pytest.raises(avro_codec.WireFormatError, match="1 rows, row_count says 2"):
        messages.read_records(short)
    window = messages.write_window_batches([bucket("s1")], [1])[0][0]
    with pytest.raises(avro_codec.WireFormatError, match="cannot decode window_batch"):
        messages.read_records(window)  # a window batch on usage.accepted is not misread as records


def test_single_and_batched_events_are_read_in_order() -> None:
    events = [UsageEvent(f"e{n}", "t1", "s1", "m", n / 10, 1_700_000_000_000 + n, f"k{n}", {}) for n in range(3)]
    single = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(events[0]))
    batch = avro_codec.encode(messages.USAGE_EVENT_BATCH, {"events": [messages.usage_event_avro(e) for e in events]})
    assert messages.read_usage(single) == events[:1]
    assert messages.read_usage(batch) == events


@pytest.mark.parametrize("value", [None, b"", b"\x00", b"\x01\x00\x00\x00\x65abc", b"\x00\x00\x00\x00\x65\xff\xff\xff"])
def test_unreadable_messages_are_rejections(value: bytes | None) -> None:
    [item] = messages.read_usage(value)
    assert isinstance(item, Rejection) and item.reason is Reason.UNDECODABLE


def test_a_window_message_on_the_events_topic_is_rejected_not_misread() -> None:
    row = WindowRow(WindowKey("s1", "m", Granularity.QUARTER, 0), "t1", 900_000, 0, WindowTotals())
    [item] = messages.read_usage(messages.write_window(row))
    assert isinstance(item, Rejection) and "not a usage event" in item.detail


def test_dead_letters_keep_the_original_bytes_and_source() -> None:
    letter = DeadLetter(
        Rejection(Reason.INVALID_VALUE, "must be finite", "events[2].value"), b"\x00raw", "usage.events", 3, 99
    )
    decoded = messages.read_dead_letter(messages.write_dead_letter(letter, 1_700_000_000_000, b"s1"))
    assert decoded["original"] == b"\x00raw" and decoded["original_key"] == b"s1"
    assert (decoded["source_partition"], decoded["source_offset"], decoded["field"]) == (3, 99, "events[2].value")
    assert decoded["reason"] == "invalid_value"


def test_partitioning_matches_the_java_client() -> None:
    # Utils.murmur2 values from Kafka's own UtilsTest; toPositive(hash) % partitions is where the
    # Java producer's default partitioner puts the key.
    java = {"21": -973932308, "foobar": -790332482, "abc": 479470107, "": 275646681}
    for key, signed in java.items():
        assert partition_of(key, 1000) == (signed & 0x7FFFFFFF) % 1000
