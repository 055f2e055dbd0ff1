"""The scenario loader turns a file into domain values at the edge, naming any bad field by its path."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing.simulate.fields import duration, instant
from billing.simulate.scenario_file import load_scenario, parse_scenario
from rating.catalog import PricingModel, TierMode
from rating.errors import InvalidValue, UnknownReference
from rating.numbers import decimal_from_double
from rating.periods import BillingInterval

pytestmark = pytest.mark.unit


def minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "metrics": [{"code": "calls"}],
        "plans": [
            {"code": "p", "currency_code": "usd", "meters": [{"metric_code": "calls", "pricing_model": "metered"}]}
        ],
        "subscriptions": [{"id": "s", "plan_code": "p", "start_at": "2026-01-01T07:00:00+07:00"}],
        "run_until": "2026-02-01T00:00:00Z",
    }
    doc.update(extra)
    return doc


def test_defaults_aliases_and_case() -> None:
    scenario = parse_scenario(minimal())
    [plan] = scenario.plans
    assert plan.currency_code == "USD" and plan.base_price == 0 and plan.billing_interval is BillingInterval.MONTH
    [meter] = plan.meters
    assert meter.pricing_model is PricingModel.PER_UNIT and meter.tier_mode is TierMode.GRADUATED  # METERED alias
    [sub] = scenario.subscriptions
    assert sub.start_at == datetime(2026, 1, 1, tzinfo=UTC) and sub.tenant_id == "default"
    assert scenario.grace_period == timedelta(0)


def test_numbers_written_in_the_file_are_read_exactly() -> None:
    doc = minimal()
    doc["plans"][0]["base_price"] = 0.1
    doc["plans"][0]["meters"][0]["unit_price"] = 0.002
    plan = parse_scenario(doc).plans[0]
    assert plan.base_price == Decimal("0.1") and plan.meters[0].unit_price == Decimal("0.002")


def test_expected_annotations_are_ignored_at_the_top_only() -> None:
    assert parse_scenario(minimal(expected_invoices=[1, 2])).run_until == datetime(2026, 2, 1, tzinfo=UTC)
    doc = minimal()
    doc["plans"][0]["expected_total"] = 1
    with pytest.raises(InvalidValue) as caught:
        parse_scenario(doc)
    assert caught.value.field == "plans[0].expected_total"


def test_unknown_references_are_their_own_error() -> None:
    doc = minimal()
    doc["subscriptions"][0]["plan_code"] = "nope"
    with pytest.raises(UnknownReference) as caught:
        parse_scenario(doc)
    assert caught.value.field == "subscriptions[0].plan_code"


@pytest.mark.parametrize("raw", [None, [], "text", 3])
def test_a_scenario_must_be_a_mapping(raw: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_scenario(raw)
    assert caught.value.field == "scenario"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-05T10:00:00Z", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        ("2026-01-05T17:00:00+07:00", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        (" 2026-01-05T10:00:00.250Z ", datetime(2026, 1, 5, 10, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_instants(value: str, expected: datetime) -> None:
    assert instant(value, "f") == expected


@pytest.mark.parametrize("value", ["2026-01-05T10:00:00", "2026-01-05", "yesterday", "2026-02-30T00:00:00Z", 5, None])
def test_bad_instants(value: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        instant(value, "events[2].recorded_at")
    assert caught.value.field == "events[2].recorded_at"


@pytest.mark.parametrize(
    ("value", "seconds"), [(0, 0), (90, 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("3d", 259_200)]
)
def test_durations(value: object, seconds: int) -> None:
    assert duration(value, "grace_period") == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value", [-1, "-1h", "2w", "h", "1.5h", True, 1.5, "99999999999999999999d", 10**30, "9" * 5000 + "s"]
)
def test_bad_durations(value: object) -> None:
    with pytest.raises(InvalidValue):
        duration(value, "grace_period")


def test_load_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InvalidValue, match="not valid JSON"):
        load_scenario(bad)


EVENT = '{subscription_id: s, metric_code: calls, recorded_at: "2026-01-05T10:00:00Z", idempotency_key: k%d, value: %s}'


def scenario_file(tmp_path: Path, *values: str, suffix: str = ".yaml") -> Path:
    """A minimal scenario file whose events carry ``values`` written as they are in the text."""
    if suffix == ".json":
        events = ", ".join(
            f'{{"subscription_id": "s", "metric_code": "calls", "recorded_at": "2026-01-05T10:00:00Z",'
            f' "idempotency_key": "k{n}", "value": {value}}}'
            for n, value in enumerate(values)
        )
        content = json.dumps(minimal()).replace('"run_until"', f'"events": [{events}], "run_until"')
    else:
        events = "\n".join(f"  - {EVENT % (n, value)}" for n, value in enumerate(values))
        content = yaml.safe_dump(minimal()) + f"events:\n{events}\n"
    path = tmp_path / f"scenario{suffix}"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize(
    "literal",
    [
        "9007199254740993",  # 2^53 + 1: a double rounds it to ...992
        "12345678901234567.25",  # a double rounds it to ...568
        '"12345678901234567.25"',
        "0.1000000000001",  # 13 fractional digits: the pipeline would round it to 0.1
        "123456789012345678901234567",  # 27 integer digits: beyond Decimal128(12)
        '"1e26"',
    ],
)
def test_file_event_values_are_read_from_the_text_and_refused_when_they_cannot_travel_exactly(
    tmp_path: Path, suffix: str, literal: str
) -> None:
    path = scenario_file(tmp_path, "1", literal, suffix=suffix)
    with pytest.raises(InvalidValue) as caught:
        load_scenario(path)
    assert caught.value.field == "events[1].value"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_event_values_that_a_double_carries_exactly_arrive_as_written(tmp_path: Path, suffix: str) -> None:
    literals = ["0.1", '"2.25"', "9007199254740992", "-5", "0.000000000015", "1.5e+20", "99999999999999990000000000"]
    events = load_scenario(scenario_file(tmp_path, *literals, suffix=suffix)).events
    read = [decimal_from_double(e.usage_event().value) for e in events]
    assert read == [Decimal(text.strip('"')) for text in literals]


def test_file_event_values_the_pipeline_rejects_still_reach_it(tmp_path: Path) -> None:
    """NaN and infinities are dead-lettered by the pipeline (design section 3), not refused here."""
    values = [e.value for e in load_scenario(scenario_file(tmp_path, ".nan", "-.inf", '"NaN"')).events]
    assert math.isnan(values[0]) and values[1] == -math.inf and math.isnan(values[2])


def test_file_prices_are_read_from_the_text(tmp_path: Path) -> None:
    doc = minimal()
    doc["plans"][0]["meters"][0]["included_units"] = 0  # replaced below, written as a YAML number
    content = yaml.safe_dump(doc).replace("included_units: 0", "included_units: 12345678901234567.25")
    path = tmp_path / "prices.yaml"
    path.write_text(content, encoding="utf-8")
    assert load_scenario(path).plans[0].meters[0].included_units == Decimal("12345678901234567.25")
    path.write_text(content.replace("12345678901234567.25", "0.1000000000001"), encoding="utf-8")
    with pytest.raises(InvalidValue) as caught:
        load_scenario(path)  # 13 fractional digits: a double would have rounded it silently
    assert caught.value.field == "plans[0].meters[0].included_units"


def put(doc: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """``doc`` with ``value`` at a dotted path such as ``plans.0.meters.0.unit_price``."""
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return doc


def with_event(**changes: Any) -> dict[str, Any]:
    event = {"subscription_id": "s", "metric_code": "calls", "value": 1, "recorded_at": "2026-01-05T10:00:00Z"}
    return minimal(events=[{**event, "idempotency_key": "k", **changes}])


TOO_LONG = "x" * 10_000_000  # 10 MB


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("tenant_id", "t\x00", "tenant_id"),
        ("tenant_id", " ", "tenant_id"),
        ("tenant_id", TOO_LONG, "tenant_id"),
        ("metrics.0.code", "c" * 129, "metrics[0].code"),
        ("metrics.0.unit", "u" * 1025, "metrics[0].unit"),
        ("plans.0.code", TOO_LONG, "plans[0].code"),
        ("plans.0.code", "p\x00", "plans[0].code"),
        ("plans.0.name", "n\r\n", "plans[0].name"),
        ("plans.0.base_price", "99999999999999999999999999", "plans[0].base_price"),
        ("plans.0.base_price", "1000000000000.01", "plans[0].base_price"),
        ("plans.0.meters.0.unit_price", "1000000000001", "plans[0].meters[0].unit_price"),
        ("plans.0.meters.0.metric_code", "calls\x00", "plans[0].meters[0].metric_code"),
        ("subscriptions.0.id", TOO_LONG, "subscriptions[0].id"),
        ("subscriptions.0.id", "s\x00", "subscriptions[0].id"),
        ("subscriptions.0.timezone", TOO_LONG, "subscriptions[0].timezone"),
        ("subscriptions.0.trial_balance", "1e13", "subscriptions[0].trial_balance"),
        ("subscriptions.0.trial_days", 10**40, "subscriptions[0].trial_days"),
    ],
)
def test_catalog_text_and_prices_beyond_the_limits_are_refused_naming_the_field(
    path: str, value: object, field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_scenario(put(minimal(), path, value))
    assert caught.value.field == field
    assert len(str(caught.value)) < 300  # the message names the field, it does not repeat 10 MB


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"idempotency_key": "k" * 257}, "events[0].idempotency_key"),
        ({"id": "e\x00"}, "events[0].id"),
        ({"subscription_id": TOO_LONG}, "events[0].subscription_id"),
        ({"metadata": {f"k{n}": "v" for n in range(33)}}, "events[0].metadata"),
        ({"metadata": {"k" * 65: "v"}}, "events[0].metadata"),
        ({"metadata": {"k": "v" * 1025}}, "events[0].metadata"),
        ({"metadata": {"k": "a\x00b"}}, "events[0].metadata"),
    ],
)
def test_event_text_beyond_the_limits_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_scenario(with_event(**changes))
    assert caught.value.field == field


def test_text_and_prices_at_the_limits_are_accepted() -> None:
    doc = put(minimal(tenant_id="t" * 128), "plans.0.base_price", "1000000000000")
    put(doc, "plans.0.meters.0.unit_price", "1000000000000")
    doc["events"] = with_event(
        idempotency_key="k" * 256, metadata={f"{n:064d}": "é" * 1024 for n in range(32)}, id="e" * 256
    )["events"]
    scenario = parse_scenario(doc)
    assert scenario.plans[0].base_price == Decimal(10) ** 12 and len(scenario.events[0].metadata) == 32


@pytest.mark.parametrize(("text", "field"), [("x" * 10_000_000, "plans[0].code"), ("p\x00", "plans[0].code")])
def test_catalog_apply_refuses_a_bad_file_with_exit_2_before_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str, field: str
) -> None:
    from billing.cli import main

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")  # never reached
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(put(minimal(), "plans.0.code", text) | {"subscriptions": []}), encoding="utf-8")
    assert main(["catalog", "apply", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}: ") and len(err) < 300
