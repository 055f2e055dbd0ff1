"""Avro wire contracts: every schema round-trips, v1 and v2 of UsageEvent read each other, and bytes
that are not ours are rejected with WireFormatError."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import pytest

from schemas import avro_codec
from schemas.avro_codec import RecordError, WireFormatError, decode, encode, writer_schema_of

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)


def usage_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "id": "evt_1",
        "tenant_id": "t1",
        "subscription_id": "sub_1",
        "metric_code": "api_calls",
        "value": 1.0,
        "recorded_at": T0,
        "idempotency_key": "k1",
        "metadata": {"region": "ap-southeast-3", "user": "u1"},
    }
    event.update(overrides)
    return event


SAMPLES: dict[str, dict[str, Any]] = {
    "usage_event.v1": usage_event(),
    "usage_event.v2": usage_event(source="api-gateway"),
    "usage_event_batch.v1": {"events": [usage_event(), usage_event(idempotency_key="k2", value=2.5, metadata={})]},
    "dead_letter.v1": {
        "reason": "unknown_metric",
        "detail": "metric 'apicalls' is not in the catalog",
        "original": b"\x00\x00\x00\x00e\xff\xfe",
        "source_topic": "usage.events",
        "source_partition": 3,
        "source_offset": 2**40,
        "failed_at": T0 + timedelta(seconds=1),
        "field": "metric_code",
        "original_key": b"sub_1",
    },
    "window_total.v1": {
        "subscription_id": "sub_1",
        "tenant_id": "t1",
        "metric_code": "storage_gb",
        "granularity": "hour",
        "window_start": datetime(2026, 1, 5, 10, tzinfo=UTC),
        "window_end": datetime(2026, 1, 5, 11, tzinfo=UTC),
        "version": 3,
        "event_count": 3,
        "sum": "1.000000000001",
        "max": "0.5",
        "latest_at": T0,
        "latest_key": "k3",
        "latest_value": "0.5",
        "first_at": datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        "first_value": "0.1",
        "last_at": T0,
        "last_value": "0.5",
        "tw_integral": "12300.0",
        "uniques": ["u1", "u2"],
    },
}
SAMPLES["dead_letter.v2"] = {
    **SAMPLES["dead_letter.v1"],
    "original_truncated": True,
    "original_size": 1_000_000,
    "event_index": 7,
}
SAMPLES["window_total.v2"] = {
    **SAMPLES["window_total.v1"],
    "first_key": "k1",
    "first_unique": None,
    "latest_unique": "u2",
}
SAMPLES["window_total.v3"] = {
    **SAMPLES["window_total.v2"],
    "granularity": "15m",
    "window_start": datetime(2026, 1, 5, 10, 15, tzinfo=UTC),
    "window_end": datetime(2026, 1, 5, 10, 30, tzinfo=UTC),
    "rollups": {
        "hour_start": datetime(2026, 1, 5, 10, tzinfo=UTC),
        "day_start": datetime(2026, 1, 4, 17, tzinfo=UTC),
        "day_end": datetime(2026, 1, 5, 17, tzinfo=UTC),
        "month_start": datetime(2025, 12, 31, 17, tzinfo=UTC),
        "month_end": datetime(2026, 1, 31, 17, tzinfo=UTC),
    },
}
SAMPLES["window_batch.v1"] = {
    "row_count": 2,
    "arrow_ipc": b"\xff\xff\xff\xff\x00\x01 stands for an Arrow IPC stream: Avro carries it as opaque bytes",
}
SAMPLES["usage_record_batch.v1"] = {
    "row_count": 3,
    "arrow_ipc": b"\xff\xff\xff\xff\x00\x01 stands for an Arrow IPC stream of usage_events' columns",
}
SAMPLES["usage_record.v1"] = {
    "event_id": "evt_1",
    "tenant_id": "t1",
    "subscription_id": "sub_1",
    "metric_code": "api_calls",
    "value": "0.000000000001",
    "recorded_at": T0,
    "idempotency_key": "k1",
    "metadata": {"user": "u1"},
    "unique_value": "u1",
}

SAMPLES["rating_result.v1"] = {
    "subscription_id": "sub_1",
    "plan_code": "pro",
    "plan_version": 2,
    "period_start": datetime(2026, 1, 1, tzinfo=UTC),
    "period_end": datetime(2026, 2, 1, tzinfo=UTC),
    "proration_numerator": 17,
    "proration_denominator": 31,
    "rated_at": T0,
    "items": [
        {"metric_code": "api_calls", "quantity": "1500.5", "amount": {"amount_minor": 8, "currency_code": "USD"}}
    ],
    "is_trial": False,
    "reason": "period_end",
    "subscription": {
        "id": "sub_1",
        "tenant_id": "t1",
        "plan_code": "pro",
        "start_at": datetime(2025, 12, 1, tzinfo=UTC),
        "timezone": "Asia/Jakarta",
        "region_code": "ID",
        "allow_overage_billing": True,
        "trial_days": 0,
        "trial_balance": None,
        "has_payment_method": True,
        "coupon_code": None,
    },
    "plan_snapshot": '{"code":"pro"}',
    "terms": {
        "tenant_id": "t1",
        "metrics": [{"code": "api_calls", "type": "COUNTER", "aggregation": "SUM", "unit": "", "field": None}],
        "tax_rules": [
            {"region_code": "ID", "name": "PPN", "rate_percent": "11", "is_default": False, "is_active": True}
        ],
        "coupons": [],
    },
    "late_usage": [],
}


def test_every_schema_file_is_registered_once() -> None:
    on_disk = {
        p.name.removesuffix(".avsc") for p in files("schemas").joinpath("avro").iterdir() if p.name.endswith(".avsc")
    }
    assert on_disk == set(avro_codec.SCHEMA_IDS)
    assert set(SAMPLES) == set(avro_codec.SCHEMA_IDS)
    assert len(set(avro_codec.SCHEMA_IDS.values())) == len(avro_codec.SCHEMA_IDS)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(name: str) -> None:
    data = encode(name, SAMPLES[name])
    assert decode(name, data) == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_header_is_magic_zero_and_big_endian_schema_id(name: str) -> None:
    data = encode(name, SAMPLES[name])
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == avro_codec.SCHEMA_IDS[name]
    assert writer_schema_of(data) == name


def test_timestamps_decode_as_utc_datetimes_with_millisecond_precision() -> None:
    record = decode(
        "usage_event.v1", encode("usage_event.v1", usage_event(recorded_at=T0 + timedelta(microseconds=999)))
    )
    assert record["recorded_at"] == T0
    assert record["recorded_at"].utcoffset() == timedelta(0)
    millis = int(T0.timestamp() * 1000)
    assert decode("usage_event.v1", encode("usage_event.v1", usage_event(recorded_at=millis)))["recorded_at"] == T0


def test_old_writer_new_reader_fills_the_default() -> None:
    record = decode("usage_event.v2", encode("usage_event.v1", usage_event()))
    assert record == {**usage_event(), "source": None}


def test_new_writer_old_reader_skips_the_new_field() -> None:
    record = decode("usage_event.v1", encode("usage_event.v2", usage_event(source="api-gateway")))
    assert record == usage_event()


def test_dead_letter_v1_reads_as_v2_with_defaults_and_back() -> None:
    """Old letters stay readable by the new reader (and the new ones by an old reader)."""
    old = decode("dead_letter.v2", encode("dead_letter.v1", SAMPLES["dead_letter.v1"]))
    assert old == {**SAMPLES["dead_letter.v1"], "original_truncated": False, "original_size": -1, "event_index": None}
    assert decode("dead_letter.v1", encode("dead_letter.v2", SAMPLES["dead_letter.v2"])) == SAMPLES["dead_letter.v1"]


def test_window_total_v2_reads_as_v3_without_rollups_and_v3_reads_as_v2() -> None:
    """An old worker's rows stay readable by the new sink (no roll-up bounds), and a new worker's
    by an old sink (the bounds skipped)."""
    assert decode("window_total.v3", encode("window_total.v2", SAMPLES["window_total.v2"])) == {
        **SAMPLES["window_total.v2"],
        "rollups": None,
    }
    v3 = SAMPLES["window_total.v3"]
    assert decode("window_total.v2", encode("window_total.v3", v3)) == {k: v3[k] for k in SAMPLES["window_total.v2"]}


def test_window_batch_and_window_total_are_told_apart_by_the_header_and_never_misread() -> None:
    """usage.windows holds both during an upgrade: a reader picks the schema from the header, and
    reading one as the other is a WireFormatError, not a garbled record."""
    batch = encode("window_batch.v1", SAMPLES["window_batch.v1"])
    row = encode("window_total.v3", SAMPLES["window_total.v3"])
    assert (writer_schema_of(batch), writer_schema_of(row)) == ("window_batch.v1", "window_total.v3")
    with pytest.raises(WireFormatError, match=r"cannot decode window_batch\.v1 as window_total\.v3"):
        decode("window_total.v3", batch)
    with pytest.raises(WireFormatError, match=r"cannot decode window_total\.v3 as window_batch\.v1"):
        decode("window_batch.v1", row)
    assert avro_codec.SCHEMA_IDS["window_batch.v1"] == 701  # a family of its own: no id of WindowTotal reused


def test_usage_record_batch_and_usage_record_are_told_apart_by_the_header_and_never_misread() -> None:
    """usage.accepted holds both during an upgrade: the sink and ``rebuild-usage`` pick the schema
    from the header, and reading one as the other is a WireFormatError, not a garbled record."""
    batch = encode("usage_record_batch.v1", SAMPLES["usage_record_batch.v1"])
    record = encode("usage_record.v1", SAMPLES["usage_record.v1"])
    assert (writer_schema_of(batch), writer_schema_of(record)) == ("usage_record_batch.v1", "usage_record.v1")
    with pytest.raises(WireFormatError, match=r"cannot decode usage_record_batch\.v1 as usage_record\.v1"):
        decode("usage_record.v1", batch)
    with pytest.raises(WireFormatError, match=r"cannot decode usage_record\.v1 as usage_record_batch\.v1"):
        decode("usage_record_batch.v1", record)
    with pytest.raises(WireFormatError, match=r"cannot decode usage_record_batch\.v1 as window_batch\.v1"):
        decode("window_batch.v1", batch)  # the same fields, another family: never read as buckets
    assert avro_codec.SCHEMA_IDS["usage_record_batch.v1"] == 801  # a family of its own, after window_batch's 701


def test_v2_writer_may_leave_out_fields_with_defaults() -> None:
    event = usage_event()
    del event["metadata"]
    assert decode("usage_event.v2", encode("usage_event.v2", event)) == {**event, "metadata": {}, "source": None}


def test_batch_round_trip_keeps_order_and_every_event() -> None:
    events = [usage_event(idempotency_key=f"k{i}", value=i / 10) for i in range(500)]
    assert decode("usage_event_batch.v1", encode("usage_event_batch.v1", {"events": events})) == {"events": events}
    assert decode("usage_event_batch.v1", encode("usage_event_batch.v1", {"events": []})) == {"events": []}


def test_consumer_tells_a_batch_from_a_single_event_by_the_header() -> None:
    single = encode("usage_event.v1", usage_event())
    batch = encode("usage_event_batch.v1", {"events": [usage_event()]})
    assert writer_schema_of(single) == "usage_event.v1"
    assert writer_schema_of(batch) == "usage_event_batch.v1"


@pytest.mark.parametrize("value", [0.1, 0.1 + 0.2, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 123456789.123456789])
def test_doubles_survive_bit_for_bit(value: float) -> None:
    decoded = decode("usage_event.v1", encode("usage_event.v1", usage_event(value=value)))["value"]
    assert struct.pack(">d", decoded) == struct.pack(">d", value)
    assert repr(decoded) == repr(value)


def test_nan_passes_the_wire_for_the_pipeline_to_reject() -> None:
    assert math.isnan(decode("usage_event.v1", encode("usage_event.v1", usage_event(value=math.nan)))["value"])


def valid() -> bytes:
    return encode("usage_event.v1", usage_event())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than"),
        (b"\x00\x00\x00", "shorter than"),
        (b"\x01" + valid()[1:], "magic byte"),
        (b"\xff" + valid()[1:], "magic byte is 255"),
        (b"\x00\x00\x00\x00\x07" + valid()[5:], r"unknown schema id 7"),
        (valid()[:-4], "cannot decode"),
        (valid()[:5], "cannot decode"),
        (valid() + b"\x00", "trailing bytes"),
        (b'{"id": "evt_1", "value": 1}', "magic byte"),
        (b"\x00\x00\x00\x00\x65" + b"\xff" * 40, "cannot decode"),
        (encode("dead_letter.v1", SAMPLES["dead_letter.v1"]), r"cannot decode dead_letter\.v1 as usage_event\.v1"),
        (encode("usage_event_batch.v1", SAMPLES["usage_event_batch.v1"]), r"cannot decode usage_event_batch\.v1"),
    ],
)
def test_bad_bytes_raise_wire_format_error(data: bytes, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        decode("usage_event.v1", data)


def test_invalid_utf8_is_a_wire_format_error() -> None:
    data = bytearray(valid())
    data[6] = 0xFF  # first byte of the id string "evt_1"
    with pytest.raises(WireFormatError):
        decode("usage_event.v1", bytes(data))


def test_wire_format_error_is_a_value_error() -> None:
    assert issubclass(WireFormatError, ValueError)


def test_expected_writer_must_match_the_header() -> None:
    data = encode("usage_event.v2", usage_event(source=None))
    assert decode("usage_event.v1", data, writer_schema_name="usage_event.v2") == usage_event()
    with pytest.raises(WireFormatError, match=r"written with usage_event\.v2, expected usage_event\.v1"):
        decode("usage_event.v1", data, writer_schema_name="usage_event.v1")


def test_unknown_schema_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match=r"usage_event\.v9"):
        encode("usage_event.v9", usage_event())


@pytest.mark.parametrize(
    "record",
    [
        {k: v for k, v in usage_event().items() if k != "idempotency_key"},
        usage_event(unexpected="x"),
        usage_event(value="one"),
        usage_event(metadata={"n": 1}),
        usage_event(recorded_at=datetime(2026, 1, 5, 10)),  # noqa: DTZ001 - the naive datetime under test
    ],
    ids=["missing-field", "extra-field", "wrong-type", "wrong-map-value", "naive-datetime"],
)
def test_records_that_do_not_fit_raise_record_error(record: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        encode("usage_event.v1", record)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_epoch_ms_reads_and_writes_the_same_bytes_with_integer_timestamps(name: str) -> None:
    data = encode(name, SAMPLES[name])
    as_ms = decode(name, data, epoch_ms=True)
    assert encode(name, as_ms, epoch_ms=True) == data
    assert decode(name, encode(name, as_ms, epoch_ms=True)) == SAMPLES[name]
    if name == "usage_record.v1":
        assert as_ms["recorded_at"] == int(T0.timestamp() * 1000)


def test_epoch_ms_refuses_a_datetime_rather_than_guess_its_zone() -> None:
    with pytest.raises(avro_codec.RecordError):
        encode("usage_record.v1", SAMPLES["usage_record.v1"], epoch_ms=True)


def test_schemas_are_parsed_once() -> None:
    assert avro_codec.schema("usage_event_batch.v1") is avro_codec.schema("usage_event_batch.v1")


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("usage_event_batch.v1", {"events": [usage_event(), usage_event(recorded_at=datetime(2026, 1, 5, 10))]}),  # noqa: DTZ001
        ("window_total.v2", {**SAMPLES["window_total.v2"], "latest_at": datetime(2026, 1, 5, 10)}),  # noqa: DTZ001
        (
            "window_total.v3",
            {
                **SAMPLES["window_total.v3"],
                "rollups": {**SAMPLES["window_total.v3"]["rollups"], "day_end": datetime(2026, 1, 5, 17)},  # noqa: DTZ001
            },
        ),
    ],
    ids=["inside-a-batch", "nullable-field", "inside-a-nullable-record"],
)
def test_a_naive_datetime_anywhere_a_schema_has_a_timestamp_is_refused(name: str, record: dict[str, Any]) -> None:
    """The check looks only where the schema has timestamps (a walk over every value cost more than
    the write itself), so it must still find them in arrays and unions."""
    with pytest.raises(avro_codec.RecordError, match="naive datetime"):
        encode(name, record)
