"""Bad input gets a clear error naming the field, and nothing already stored is lost or changed."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rating.catalog import Aggregation, Metric, MetricType
from streams.clickhouse.store import ClickHouseDeadLetters, ClickHouseUsageStore
from streams.inprocess import InProcessPipeline
from streams.operators.intervals import UsageQuery
from streams.operators.process import Catalog
from streams.operators.records import Reason, UsageEvent
from streams.operators.validate import SubscriptionRef

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


DELETE = object()
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
