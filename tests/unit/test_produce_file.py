"""``billing produce --file`` reads event values exactly from the file's text: a value no double
carries exactly, or one the store cannot hold, is refused naming ``events[i].value`` (exit 2), never
sent as a nearby number."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from billing.produce import file_events
from rating.errors import InvalidValue
from rating.numbers import decimal_from_double

pytestmark = pytest.mark.unit

LINE = (
    '{"subscription_id": "s1", "metric_code": "calls", "recorded_at": "2026-01-01T10:00:00Z",'
    ' "idempotency_key": "k%d", "value": %s}'
)
ITEM = (
    '- {subscription_id: s1, metric_code: calls, recorded_at: "2026-01-01T10:00:00Z", idempotency_key: k%d, value: %s}'
)


def events_file(tmp_path: Path, suffix: str, *values: str) -> Path:
    template = LINE if suffix == ".jsonl" else ITEM
    path = tmp_path / f"events{suffix}"
    path.write_text("\n".join(template % (n, v) for n, v in enumerate(values)) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".yaml"])
@pytest.mark.parametrize(
    "literal", ["9007199254740993", "12345678901234567.25", '"12345678901234567.25"', "0.1000000000001", '"1e26"']
)
def test_a_file_value_that_cannot_travel_exactly_is_refused_naming_it(
    tmp_path: Path, suffix: str, literal: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        file_events(events_file(tmp_path, suffix, "2", literal))
    assert caught.value.field == "events[1].value"


@pytest.mark.parametrize("suffix", [".jsonl", ".yaml"])
def test_file_values_arrive_as_written(tmp_path: Path, suffix: str) -> None:
    literals = ["0.1", '"2.25"', "9007199254740992", "0.000000000015", "1.5e+20"]
    events = file_events(events_file(tmp_path, suffix, *literals))
    assert [decimal_from_double(e.value) for e in events] == [Decimal(v.strip('"')) for v in literals]


def test_billing_produce_exits_2_naming_the_value_without_a_traceback(tmp_path: Path) -> None:
    path = events_file(tmp_path, ".jsonl", "1", "9007199254740993")
    done = subprocess.run(
        [sys.executable, "-m", "billing.cli", "produce", "--file", str(path), "--bootstrap", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "events[1].value" in done.stderr and "Traceback" not in done.stderr


def test_a_file_event_beyond_the_text_limits_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    line = '{"subscription_id": "s1", "metric_code": "calls", "recorded_at": "2026-01-01T10:00:00Z", "value": 1'
    path.write_text(f'{line}, "idempotency_key": "k0"}}\n{line}, "idempotency_key": "k\\u0000"}}\n', encoding="utf-8")
    with pytest.raises(InvalidValue) as caught:
        file_events(path)
    assert caught.value.field == "events[1].idempotency_key"
