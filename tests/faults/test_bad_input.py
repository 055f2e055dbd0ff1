"""Bad input gets a clear error naming the field, and nothing already stored is lost or changed."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from billing.simulate import parse_scenario, result_to_dict, simulate_in_memory
from billing.simulate.scenario import Action
from rating.catalog import Aggregation, Metric, MetricType
from rating.errors import BillingError
from schemas import avro_codec
from streams.clickhouse.store import ClickHouseDeadLetters, ClickHouseUsageStore
from streams.inprocess import InProcessPipeline
from streams.kafka import messages
from streams.memory import MemoryDeadLetters, MemoryUsageStore
from streams.operators.intervals import UsageQuery
from streams.operators.process import Catalog
from streams.operators.records import Reason, Rejection, UsageEvent
from streams.operators.validate import SubscriptionRef
from streams.operators.windows import Granularity

pytestmark = pytest.mark.faults

BASE: dict[str, Any] = {
    "tenant_id": "t1",
    "metrics": [{"code": "api_calls", "aggregation": "SUM"}],
    "plans": [
        {
            "code": "pro",
            "currency_code": "USD",
            "base_price": "49.00",
            "meters": [
                {
                    "metric_code": "api_calls",
                    "pricing_model": "TIERED",
                    "tiers": [{"up_to": "100", "unit_price": "0.1"}, {"up_to": None, "unit_price": "0.05"}],
                }
            ],
        }
    ],
    "tax_rules": [{"region_code": "ID", "name": "PPN", "rate_percent": "11"}],
    "coupons": [{"code": "C", "percent_off": "10"}],
    "subscriptions": [{"id": "s1", "plan_code": "pro", "start_at": "2026-01-01T00:00:00Z", "coupon": "C"}],
    "events": [
        {
            "subscription_id": "s1",
            "metric_code": "api_calls",
            "value": 5,
            "recorded_at": "2026-01-02T00:00:00Z",
            "idempotency_key": "k1",
        }
    ],
    "actions": [{"at": "2026-01-10T00:00:00Z", "type": "credit_note", "subscription_id": "s1", "amount": "5.00"}],
    "run_until": "2026-02-01T00:00:00Z",
}


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``path`` (e.g. ``plans[0].meters[0].unit_price``) set; DELETE removes it."""
    out = copy.deepcopy(doc)
    parts = path.replace("[", ".").replace("]", "").split(".")
    node: Any = out
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


class _Delete:
    """The field is removed, not set; a stable repr keeps the test ids the same in every process
    (pytest-xdist compares the ids its workers collect)."""

    def __repr__(self) -> str:
        return "<deleted>"


DELETE = _Delete()
BAD_FIELDS = [
    ("plans[0].base_price", "abc"),
    ("plans[0].base_price", "-1"),
    ("plans[0].base_price", "0.0000000000001"),  # 13 fractional digits
    ("plans[0].currency_code", "XXX"),
    ("plans[0].billing_interval", "fortnight"),
    ("plans[0].meters[0].pricing_model", "SOMETIMES"),
    ("plans[0].meters[0].metric_code", "unknown_metric"),
    ("plans[0].meters[0].tiers[0].up_to", None),
    ("plans[0].meters[0].tiers[1].unit_price", "cheap"),
    ("plans[0].code", DELETE),
    ("metrics[0].aggregation", "MEDIAN"),
    ("tax_rules[0].rate_percent", "150"),
    ("coupons[0].percent_off", "101"),
    ("subscriptions[0].plan_code", "nope"),
    ("subscriptions[0].coupon", "NOPE"),
    ("subscriptions[0].start_at", "yesterday"),
    ("subscriptions[0].start_at", "2026-01-01T00:00:00"),  # no offset: ambiguous
    ("subscriptions[0].timezone", "Mars/Olympus"),
    ("subscriptions[0].trial_days", -3),
    ("events[0].recorded_at", "2026-13-01T00:00:00Z"),
    ("events[0].value", "five"),
    ("actions[0].type", "teleport"),
    ("actions[0].amount", "lots"),
    ("actions[0].subscription_id", "ghost"),
    ("run_until", DELETE),
    ("plans[0].base_prise", "49.00"),  # a typo is an unknown key, not a silently missing price
    ("subscriptions[0].timezon", "UTC"),
    # wrong types
    ("plans", "pro"),
    ("plans[0].meters", {"metric_code": "api_calls"}),
    ("plans[0].meters[0].tiers[0]", 5),
    ("plans[0].tax_inclusive", "yes"),
    ("plans[0].meters[0].unit_price", [1]),
    ("subscriptions[0].allow_overage_billing", "no"),
    ("subscriptions[0].trial_days", 1.5),
    ("events[0].value", [1]),
    ("events[0].value", True),
    ("events[0].metadata", "plain"),
    ("tenant_id", [1]),
    ("run_until", 5),
    ("metrics[0]", "api_calls"),
    # bad decimals
    ("plans[0].meters[0].unit_price", "1.2.3"),
    ("plans[0].meters[0].unit_price", "NaN"),
    ("plans[0].meters[0].tiers[0].up_to", "Infinity"),
    ("plans[0].meters[0].tiers[0].unit_price", "1e-13"),
    ("coupons[0].percent_off", "ten"),
    ("subscriptions[0].trial_balance", "plenty"),
    # bad timestamps
    ("run_until", "2026-02-30T00:00:00Z"),
    ("actions[0].at", "noon"),
    ("events[0].recorded_at", "2026-01-02"),
    ("events[0].arrives_at", "2026-01-01T00:00:00Z"),  # before it was recorded
    # bad currencies
    ("plans[0].currency_code", "EURO"),
    ("plans[0].currency_code", 840),
    ("plans[0].currency_code", ""),
    # negative where not allowed
    ("plans[0].meters[0].tiers[0].unit_price", "-0.1"),
    ("plans[0].meters[0].tiers[0].flat_fee", "-1"),
    ("plans[0].meters[0].tiers[0].up_to", "-100"),
    ("tax_rules[0].rate_percent", "-11"),
    ("coupons[0].percent_off", "-10"),
    ("subscriptions[0].trial_balance", "-1"),
    ("actions[0].amount", "-5.00"),
    ("grace_period", "-1h"),
    # references and enums
    ("coupons[0].duration", "weekly"),
    ("actions[0].credit_type", "GIFT"),
]


def simulate(doc: Any, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return subprocess.run(
        [sys.executable, "-m", "billing.cli", "simulate", str(path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_base_scenario_is_valid(tmp_path: Path) -> None:
    done = simulate(BASE, tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["invoices"]) == 1


@pytest.mark.parametrize(("path", "value"), BAD_FIELDS, ids=[f"{p}={v!r}" for p, v in BAD_FIELDS])
def test_a_bad_field_exits_2_naming_it_and_prints_no_invoice(tmp_path: Path, path: str, value: Any) -> None:
    done = simulate(set_path(BASE, path, value), tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    named = path.rsplit(".", 1)[0] if value is DELETE else path
    assert named in done.stderr, done.stderr


PRO_METER = {"metric_code": "api_calls", "pricing_model": "PER_UNIT", "unit_price": "0.1"}
# Each: a change to BASE, and the field the error must name.
MORE_BAD: list[tuple[str, str, Any, str]] = [
    # missing required fields name the field itself
    ("missing", "subscriptions[0].plan_code", DELETE, "subscriptions[0].plan_code"),
    ("missing", "subscriptions[0].start_at", DELETE, "subscriptions[0].start_at"),
    ("missing", "subscriptions[0].id", DELETE, "subscriptions[0].id"),
    ("missing", "plans[0].currency_code", DELETE, "plans[0].currency_code"),
    ("missing", "plans[0].meters[0].metric_code", DELETE, "plans[0].meters[0].metric_code"),
    ("missing", "plans[0].meters[0].pricing_model", DELETE, "plans[0].meters[0].pricing_model"),
    ("missing", "plans[0].meters[0].tiers", DELETE, "plans[0].meters[0].tiers"),
    ("missing", "metrics[0].code", DELETE, "metrics[0].code"),
    ("missing", "tax_rules[0].rate_percent", DELETE, "tax_rules[0].rate_percent"),
    ("missing", "events[0].recorded_at", DELETE, "events[0].recorded_at"),
    ("missing", "events[0].value", DELETE, "events[0].value"),
    ("missing", "actions[0].amount", DELETE, "actions[0].amount"),
    ("missing", "actions[0].at", DELETE, "actions[0].at"),
    ("missing", "coupons[0].percent_off", DELETE, "coupons[0].percent_off"),
    # unknown references
    (
        "unknown plan",
        "actions[0]",
        {"at": "2026-01-10T00:00:00Z", "type": "change_plan", "subscription_id": "s1", "plan_code": "enterprise"},
        "actions[0].plan_code",
    ),
    ("unknown metric", "plans[0].meters[1]", PRO_METER | {"metric_code": "gb_hours"}, "plans[0].meters[1].metric_code"),
    # rules between fields
    ("priced twice", "plans[0].meters[1]", PRO_METER, "plans[0].meters[1].metric_code"),
    (
        "tier bounds",
        "plans[0].meters[0].tiers",
        [{"up_to": "100"}, {"up_to": "50"}, {"up_to": None}],
        "plans[0].meters[0].tiers[1].up_to",
    ),
    ("last tier bounded", "plans[0].meters[0].tiers[1].up_to", "1000", "plans[0].meters[0].tiers[1].up_to"),
    (
        "package size",
        "plans[0].meters[0]",
        {"metric_code": "api_calls", "pricing_model": "PACKAGE", "unit_price": "1", "package_size": "0"},
        "plans[0].meters[0].package_size",
    ),
    ("coupon kind", "coupons[0].amount_off", "5", "coupons[0].percent_off"),
    ("unique without field", "metrics[0].aggregation", "UNIQUE_COUNT", "metrics[0].field"),
    ("twa on a counter", "metrics[0].aggregation", "TIME_WEIGHTED_SUM", "metrics[0].aggregation"),
    ("duplicate plan", "plans[1]", {"code": "pro", "currency_code": "USD"}, "plans[1]"),
    (
        "duplicate subscription",
        "subscriptions[1]",
        {"id": "s1", "plan_code": "pro", "start_at": "2026-01-01T00:00:00Z"},
        "subscriptions[1]",
    ),
]


def with_change(path: str, value: Any) -> dict[str, Any]:
    """BASE with ``path`` set; a path one past the end of a list appends to it."""
    parent, _, last = path.rpartition("[")
    if path.endswith("]") and "." not in last:
        doc = copy.deepcopy(BASE)
        node: Any = doc
        parts = parent.replace("[", ".").replace("]", "").split(".")
        for part in parts:
            node = node[int(part)] if part.isdigit() else node[part]
        if int(last[:-1]) == len(node):
            node.append(value)
            return doc
    return set_path(BASE, path, value)


@pytest.mark.parametrize(("kind", "path", "value", "named"), MORE_BAD, ids=[f"{k}:{p}" for k, p, _, _ in MORE_BAD])
def test_more_bad_fields_exit_2_naming_the_field(tmp_path: Path, kind: str, path: str, value: Any, named: str) -> None:
    done = simulate(with_change(path, value), tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: {named}: "), done.stderr


CRASHES = [
    pytest.param(
        "plans[0].base_price",
        1e300,
        "plans[0].base_price",
        id="huge-number-price",
    ),
    pytest.param(
        "plans[0].meters[0].tiers[0].unit_price",
        "1" * 50 + ".0000000000001",
        "plans[0].meters[0].tiers[0].unit_price",
        id="long-decimal-with-13-places",
    ),
    pytest.param(
        "actions[0]",
        {"at": "2025-12-01T00:00:00Z", "type": "change_plan", "subscription_id": "s1", "plan_code": "pro"},
        "actions[0].at",
        id="action-before-the-subscription-starts",
    ),
    pytest.param(
        "actions[1]",
        {"at": "2025-12-31T23:59:59Z", "type": "cancel", "subscription_id": "s1"},
        "actions[1].at",
        id="cancel-before-the-subscription-starts",
    ),
]


@pytest.mark.parametrize(("path", "value", "named"), CRASHES)
def test_values_that_must_not_crash_exit_2_naming_the_field(tmp_path: Path, path: str, value: Any, named: str) -> None:
    done = simulate(with_change(path, value), tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: {named}: "), done.stderr


def test_an_action_the_engine_refuses_at_run_time_is_named_by_its_index() -> None:
    # past the loader's check (a Scenario built in code): the runner names the action, not a bare 'at'
    early = Action(at=datetime(2025, 12, 1, tzinfo=UTC), type="change_plan", subscription_id="s1", plan_code="pro")
    scenario = dataclasses.replace(parse_scenario(BASE), actions=(*parse_scenario(BASE).actions, early))
    with pytest.raises(BillingError) as caught:
        simulate_in_memory(scenario)
    assert caught.value.field == "actions[1].at"


@pytest.mark.parametrize("text", ["", "[1, 2", "just a string", "- a\n- b"])
def test_a_file_that_is_not_a_scenario_exits_2(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "billing.cli", "simulate", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr


BASE_MS = 1_767_225_600_000
METRICS = {"calls": Metric("calls"), "gauge": Metric("gauge", MetricType.GAUGE, Aggregation.MAX)}
SUBS = {"s": SubscriptionRef("s", "t1", "UTC")}


def good(n: int) -> UsageEvent:
    return UsageEvent(f"e{n}", "t1", "s", "calls", float(n), BASE_MS + n * 60_000, f"k{n}", {})


BAD_EVENTS = [
    (UsageEvent("b1", "t1", "s", "nope", 1.0, BASE_MS, "b1", {}), Reason.UNKNOWN_METRIC, "metric_code"),
    (UsageEvent("b2", "t1", "ghost", "calls", 1.0, BASE_MS, "b2", {}), Reason.UNKNOWN_SUBSCRIPTION, "subscription_id"),
    (UsageEvent("b3", "t1", "", "calls", 1.0, BASE_MS, "b3", {}), Reason.MISSING_FIELD, "subscription_id"),
    (UsageEvent("b4", "t1", "s", "calls", 1.0, BASE_MS, "", {}), Reason.MISSING_IDEMPOTENCY_KEY, "idempotency_key"),
    (UsageEvent("b5", "t2", "s", "calls", 1.0, BASE_MS, "b5", {}), Reason.TENANT_MISMATCH, "tenant_id"),
    (UsageEvent("b6", "t1", "s", "calls", float("nan"), BASE_MS, "b6", {}), Reason.INVALID_VALUE, "value"),
    (UsageEvent("b7", "t1", "s", "calls", float("-inf"), BASE_MS, "b7", {}), Reason.INVALID_VALUE, "value"),
    (UsageEvent("b8", "t1", "s", "calls", 1e30, BASE_MS, "b8", {}), Reason.INVALID_VALUE, "value"),
    (UsageEvent("b9", "t1", "s", "calls", -1.0, BASE_MS, "b9", {}), Reason.NEGATIVE_VALUE, "value"),
    (UsageEvent("b10", "t1", "s", "calls", 1.0, BASE_MS * 3, "b10", {}), Reason.FUTURE_TIMESTAMP, "recorded_at"),
    (
        UsageEvent("b11", "t1", "s", "calls", 99.0, BASE_MS + 60_000, "k1", {}),
        Reason.IDEMPOTENCY_CONFLICT,
        "idempotency_key",
    ),
]


def test_bad_events_are_dead_lettered_and_stored_usage_is_untouched(chdb_client: Any, clickhouse_db: str) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    letters = ClickHouseDeadLetters(chdb_client, clickhouse_db)
    pipeline = InProcessPipeline(
        Catalog(METRICS.get, SUBS.get), store, letters, lambda: BASE_MS * 2, tenant_of=lambda _: "t1"
    )
    pipeline.run([good(n) for n in range(1, 50)])
    query = [UsageQuery("s", "calls", BASE_MS, BASE_MS + 86_400_000)]
    before = store.totals(query)
    stored = chdb_client.query(f"SELECT count() FROM {clickhouse_db}.usage_windows FINAL").result_rows

    outcomes = [pipeline.process(event) for event, _, _ in BAD_EVENTS]
    pipeline.flush()

    assert [(o.rejection.reason, o.rejection.field) for o in outcomes if o.rejection] == [
        (r, f) for _, r, f in BAD_EVENTS
    ]
    assert store.totals(query) == before
    assert chdb_client.query(f"SELECT count() FROM {clickhouse_db}.usage_windows FINAL").result_rows == stored
    counts = letters.counts()
    assert sum(counts.values()) == len(BAD_EVENTS)
    assert counts["invalid_value"] == 3


# --- bad events on the in-memory store, one at a time --------------------------------------------

QUERIES = [
    UsageQuery("s", metric, BASE_MS + lo, BASE_MS + hi)
    for metric in METRICS
    for lo, hi in ((0, 86_400_000), (1, 3_000_001), (-86_400_000, 2 * 86_400_000), (0, 60 * 60_000 + 7))
]
ONE_BAD = [
    *[pytest.param(event, reason, field, id=event.id) for event, reason, field in BAD_EVENTS],
    pytest.param(
        UsageEvent("c1", "t1", "s", "", 1.0, BASE_MS, "c1", {}), Reason.UNKNOWN_METRIC, "metric_code", id="no-metric"
    ),
    pytest.param(
        UsageEvent("c2", "t1", "s", "gauge", float("nan"), BASE_MS, "c2", {}), Reason.INVALID_VALUE, "value", id="nan"
    ),
    pytest.param(
        UsageEvent("c3", "t1", "s", "calls", 1e26, BASE_MS, "c3", {}), Reason.INVALID_VALUE, "value", id="just-1e26"
    ),
    pytest.param(
        UsageEvent("c4", "t1", "s", "calls", 2.0, BASE_MS + 60_000, "k1", {"extra": "x"}),
        Reason.IDEMPOTENCY_CONFLICT,
        "idempotency_key",
        id="conflict-by-metadata",
    ),
    pytest.param(
        UsageEvent("c6", "t1", "s", "calls", 1e300, BASE_MS, "c6", {}),
        Reason.INVALID_VALUE,
        "value",
        id="oversized-1e300",
    ),
]


@pytest.mark.parametrize(("bad", "reason", "field"), ONE_BAD)
def test_each_bad_event_is_dead_lettered_and_stored_usage_is_unchanged(
    bad: UsageEvent, reason: Reason, field: str
) -> None:
    store, letters = MemoryUsageStore(), MemoryDeadLetters()
    good_events = [good(n) for n in range(1, 50)] + [
        UsageEvent(f"g{n}", "t1", "s", "gauge", float(n % 7), BASE_MS + n * 90_000 + 1, f"g{n}", {}) for n in range(30)
    ]
    pipeline = InProcessPipeline(
        Catalog(METRICS.get, SUBS.get), store, letters, lambda: BASE_MS * 2, tenant_of=lambda _: "t1"
    )
    pipeline.run(good_events)
    before = store.totals(QUERIES)
    rows_before = {(m, g): store.windows("s", m, g, 0, BASE_MS * 3) for m in METRICS for g in Granularity}
    stats_before = (pipeline.stats.accepted, pipeline.stats.duplicates)

    outcome = pipeline.process(bad, original=b"original bytes")
    pipeline.flush()

    assert outcome.rejection is not None
    assert (outcome.rejection.reason, outcome.rejection.field) == (reason, field)
    assert [(letter.rejection.reason, letter.original) for letter in letters.letters] == [(reason, b"original bytes")]
    assert pipeline.stats.rejected == 1
    assert (pipeline.stats.accepted, pipeline.stats.duplicates) == stats_before
    assert store.totals(QUERIES) == before
    assert {(m, g): store.windows("s", m, g, 0, BASE_MS * 3) for m in METRICS for g in Granularity} == rows_before


def test_undecodable_and_truncated_messages_are_rejected_not_raised() -> None:
    valid = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(good(1)))
    assert messages.read_usage(valid) == [good(1)]
    for junk in (None, b"", b"\x00", b"not avro at all", valid[: len(valid) // 2], valid[:-3]):
        [rejection] = messages.read_usage(junk)
        assert isinstance(rejection, Rejection) and rejection.reason is Reason.UNDECODABLE, junk


# --- bad events in a scenario: dead letters beside unchanged invoices ----------------------------


def run_scenario(doc: dict[str, Any]) -> dict[str, Any]:
    return result_to_dict(simulate_in_memory(parse_scenario(doc)))


def with_events(*extra: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["events"].extend(extra)
    return doc


def scenario_event(**changes: Any) -> dict[str, Any]:
    event = {
        "subscription_id": "s1",
        "metric_code": "api_calls",
        "value": 7,
        "recorded_at": "2026-01-03T00:00:00Z",
        "idempotency_key": "bad",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


SCENARIO_BAD_EVENTS = [
    pytest.param(scenario_event(metric_code=None), "unknown_metric", "metric_code", id="missing-metric"),
    pytest.param(scenario_event(subscription_id=None), "missing_field", "subscription_id", id="missing-subscription"),
    pytest.param(scenario_event(idempotency_key=None), "missing_idempotency_key", "idempotency_key", id="missing-key"),
    pytest.param(scenario_event(metric_code="gb"), "unknown_metric", "metric_code", id="unknown-metric"),
    pytest.param(scenario_event(subscription_id="s9"), "unknown_subscription", "subscription_id", id="unknown-sub"),
    pytest.param(scenario_event(tenant_id="t2"), "tenant_mismatch", "tenant_id", id="wrong-tenant"),
    pytest.param(scenario_event(value="nan"), "invalid_value", "value", id="nan"),
    pytest.param(scenario_event(value="-inf"), "invalid_value", "value", id="minus-inf"),
    pytest.param(scenario_event(value=-1), "negative_value", "value", id="negative"),
    pytest.param(scenario_event(value=1e30), "invalid_value", "value", id="oversized-1e30"),
    pytest.param(
        scenario_event(idempotency_key="k1", value=6), "idempotency_conflict", "idempotency_key", id="conflict"
    ),
    pytest.param(
        scenario_event(recorded_at="2025-12-31T23:59:59Z"),
        "outside_subscription",
        "recorded_at",
        id="before-subscription-start",  # used to be stored and never invoiced: silently lost
    ),
]


@pytest.mark.parametrize(("event", "reason", "field"), SCENARIO_BAD_EVENTS)
def test_a_bad_scenario_event_is_a_dead_letter_and_changes_no_invoice(
    event: dict[str, Any], reason: str, field: str
) -> None:
    clean = run_scenario(BASE)
    dirty = run_scenario(with_events(event))
    assert [(d["reason"], d["field"]) for d in dirty["dead_letters"]] == [(reason, field)]
    assert dirty["invoices"] == clean["invoices"]
