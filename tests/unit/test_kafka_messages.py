"""The Kafka message values of the pipeline round-trip the operators' values exactly, and bad bytes
become rejections, never exceptions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.aggregations import Point, WindowTotals
from schemas import avro_codec
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


def test_records_round_trip_exactly() -> None:
    record = UsageRecord("e1", "t1", "s1", "m", Decimal("0.000000000001"), 1_700_000_000_001, "k1", {"a": "b"}, "b")
    assert messages.read_record(messages.write_record(record)) == record


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
