"""``billing dlq``'s pure parts: choosing letters, reading a letter of any shape, one replay per
rejected message, and the dead-letter topics' retention setting."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.dlq import LetterFilter, parse_offsets, parse_time, replays_of, select
from billing.dlq_retention import dlq_retention_ms
from rating.errors import InvalidValue
from schemas import avro_codec
from streams.kafka import messages
from streams.kafka.dlq import letter_of
from streams.kafka.topics import DLQ_RETENTION_MS, topic_config
from streams.operators.records import UsageEvent

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NOW_MS = 1_773_144_000_000
DAY_MS = 86_400_000


def event_bytes(sub: str, key: str = "k1") -> bytes:
    event = UsageEvent("e1", "t1", sub, "calls", 1.0, NOW_MS, key, {})
    return avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(event))


def raw_letter(**fields: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "reason": "unknown_subscription",
        "detail": "no subscription sub_a",
        "original": event_bytes("sub_a"),
        "source_topic": "usage.events",
        "source_partition": 1,
        "source_offset": 7,
        "failed_at": NOW,
        "field": "subscription_id",
        "original_key": b"sub_a",
    }
    raw.update(fields)
    return {name: value for name, value in raw.items() if value is not ...}


def test_a_letter_of_the_current_shape() -> None:
    letter = letter_of(raw_letter(), "usage.dlq", 1, 3, 0, b"sub_a")
    assert (letter.reason, letter.field, letter.subscription_id) == ("unknown_subscription", "subscription_id", "sub_a")
    assert (letter.source_partition, letter.source_offset, letter.failed_at_ms) == (1, 7, NOW_MS)
    assert letter.extra == {}


def test_missing_and_unknown_fields_are_tolerated() -> None:
    """A newer letter may drop fields or add some (e.g. the rejected indices of a batch)."""
    raw = raw_letter(field=..., original_key=..., failed_at=..., source_offset=..., rejected_indices=[0, 3])
    letter = letter_of(raw, "usage.dlq", 0, 9, 1234, b"record-key")
    assert letter.field is None
    assert letter.original_key == b"record-key"  # the dead letter's own key stands in
    assert letter.failed_at_ms == 1234  # the record's timestamp stands in
    assert letter.source_offset == -1
    assert letter.extra == {"rejected_indices": [0, 3]}


def test_the_subscription_comes_from_the_original_else_the_key() -> None:
    assert letter_of(raw_letter(original_key=b"other"), "t", 0, 0, 0, None).subscription_id == "sub_a"
    undecodable = raw_letter(original=b"\x00garbage", original_key=b"sub_k")
    assert letter_of(undecodable, "t", 0, 0, 0, None).subscription_id == "sub_k"
    assert letter_of(raw_letter(original=b"x", original_key=None), "t", 0, 0, 0, None).subscription_id is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T00:00:00Z", 1_772_323_200_000),
        ("2026-03-01T05:45:00+05:45", 1_772_323_200_000),
        ("90m", NOW_MS - 90 * 60_000),
        ("36h", NOW_MS - 36 * 3_600_000),
        ("7d", NOW_MS - 7 * DAY_MS),
        ("2w", NOW_MS - 14 * DAY_MS),
    ],
)
def test_times_are_instants_or_ages(text: str, expected: int) -> None:
    assert parse_time(text, NOW, "--since") == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-03-01T00:00:00", "7 days", "-3d"])
def test_a_wrong_time_names_its_option(text: str) -> None:
    with pytest.raises(InvalidValue, match="--since"):
        parse_time(text, NOW, "--since")


def test_offsets() -> None:
    assert parse_offsets(["0:17,2:5", "1:0"]) == {(0, 17), (2, 5), (1, 0)}
    for wrong in ("17", "a:1", "1:-2", "1:2:3"):
        with pytest.raises(InvalidValue, match="--offset"):
            parse_offsets([wrong])


def letters() -> list[Any]:
    rows = [
        ("unknown_subscription", "sub_a", 0, 0, 3),
        ("unknown_metric", "sub_b", 0, 1, 1),
        ("unknown_subscription", "sub_b", 1, 0, 2),
        ("negative_value", "sub_a", 1, 1, 0),
    ]
    return [
        letter_of(
            raw_letter(
                reason=reason,
                original=event_bytes(sub),
                original_key=sub.encode(),
                failed_at=NOW_MS + hours * 3_600_000,
            ),
            "usage.dlq",
            partition,
            offset,
            0,
            None,
        )
        for reason, sub, partition, offset, hours in rows
    ]


def test_filters_combine_and_order_by_failure_time() -> None:
    every = letters()
    assert [x.reason for x in select(every, LetterFilter()).letters] == [
        "negative_value",
        "unknown_metric",
        "unknown_subscription",
        "unknown_subscription",
    ]
    chosen = select(
        every, LetterFilter(reasons=frozenset({"unknown_subscription"}), subscriptions=frozenset({"sub_b"}))
    )
    assert [(x.partition, x.offset) for x in chosen.letters] == [(1, 0)]
    window = LetterFilter(since_ms=NOW_MS + 1 * 3_600_000, until_ms=NOW_MS + 3 * 3_600_000)  # until is exclusive
    assert [x.subscription_id for x in select(every, window).letters] == ["sub_b", "sub_b"]
    assert [(x.partition, x.offset) for x in select(every, LetterFilter(offsets=frozenset({(1, 1)}))).letters] == [
        (1, 1)
    ]
    newest = select(every, LetterFilter(), limit=2)
    assert ([x.offset for x in newest.letters], newest.matched, newest.read) == ([0, 0], 4, 4)
    nothing = select(every, LetterFilter(reasons=frozenset({"typo"})))
    assert nothing.letters == [] and nothing.reasons == {
        "negative_value": 1,
        "unknown_metric": 1,
        "unknown_subscription": 2,
    }


def test_one_replay_per_rejected_message() -> None:
    """A batch rejected for two of its events has two letters with one original: it goes back once."""
    batch = avro_codec.encode(
        messages.USAGE_EVENT_BATCH,
        {
            "events": [
                messages.usage_event_avro(UsageEvent(f"e{n}", "t1", "sub_c", "calls", 1.0, NOW_MS, f"k{n}", {}))
                for n in range(3)
            ]
        },
    )
    twice = [
        letter_of(
            raw_letter(original=batch, original_key=None, source_offset=40, field=f"events[{n}].value"),
            "usage.dlq",
            0,
            n,
            0,
            None,
        )
        for n in (0, 2)
    ]
    other = letters()[:1]
    replays = replays_of([*twice, *other], "usage.events")
    assert [(r.topic, r.key, r.value) for r, _ in replays] == [
        ("usage.events", b"sub_c", batch),  # no key on the original: the subscription's, as the pipeline keys
        ("usage.events", b"sub_a", other[0].original),
    ]
    assert [len(answered) for _, answered in replays] == [2, 1]


def test_dead_letter_topics_keep_letters_a_year_also_under_a_prefix() -> None:
    assert DLQ_RETENTION_MS == 365 * DAY_MS
    for name in ("usage.dlq", "rating.dlq", "sim-1.usage.dlq"):
        assert topic_config(name)["retention.ms"] == str(365 * DAY_MS)
        assert topic_config(name, 30 * DAY_MS)["retention.ms"] == str(30 * DAY_MS)
    assert "retention.ms" not in topic_config("usage.events", 30 * DAY_MS)


def test_retention_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BILLING_DLQ_RETENTION_DAYS", raising=False)
    assert dlq_retention_ms() == 365 * DAY_MS
    assert dlq_retention_ms(30) == 30 * DAY_MS
    monkeypatch.setenv("BILLING_DLQ_RETENTION_DAYS", "730")
    assert dlq_retention_ms() == 730 * DAY_MS
    monkeypatch.setenv("BILLING_DLQ_RETENTION_DAYS", "-1")
    assert dlq_retention_ms() == -1
    monkeypatch.setenv("BILLING_DLQ_RETENTION_DAYS", "a year")
    with pytest.raises(InvalidValue, match="BILLING_DLQ_RETENTION_DAYS"):
        dlq_retention_ms()
    with pytest.raises(InvalidValue):
        dlq_retention_ms(0)


def billing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing.cli", *args], capture_output=True, text=True, timeout=60)


def test_wrong_arguments_exit_2_with_a_message_and_no_traceback() -> None:
    for args, message in [
        (("dlq", "replay"), "choose the letters to replay"),
        (("dlq", "list", "--since", "yesterday"), "--since"),
        (("dlq", "replay", "--offset", "3"), "--offset"),
        (("dlq", "list", "--limit", "0"), "--limit"),
        (("dlq", "list", "--topic", "billing"), "invalid choice"),
        (("dlq",), "required"),
    ]:
        done = billing(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_no_broker_is_a_message_and_status_1_within_seconds() -> None:
    """Nothing listens on port 1: a clear message, no traceback, no librdkafka log spam or long hang."""
    for command in ("list", "retention"):
        done = billing("dlq", command, "--bootstrap", "127.0.0.1:1", "--timeout", "1")
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: no Kafka broker answered at 127.0.0.1:1 within 1s"), done.stderr
        assert "Traceback" not in done.stderr and "FAIL" not in done.stderr


def test_a_cut_original_is_never_replayed() -> None:
    """A letter holding only the first bytes of a large message would replay garbage."""
    raw = raw_letter(original=b"\x00\x01cut", original_truncated=True, original_size=300_000, event_index=2)
    cut = letter_of(raw, "usage.dlq", 0, 4, 0, None)
    assert (cut.truncated, cut.original_size, cut.event_index, cut.extra) == (True, 300_000, 2, {})
    assert replays_of([cut], "usage.events") == []
    whole = letter_of(raw_letter(original_size=-1), "usage.dlq", 0, 5, 0, None)  # -1: written by a v1 producer
    assert not whole.truncated and whole.original_size == len(whole.original)
