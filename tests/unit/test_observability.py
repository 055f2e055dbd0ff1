"""Dashboards and alerts as code stay true to the code (issue #15.2): the committed dashboard JSON is
what the generator builds, every PromQL expression of the dashboards and the alert rules names only
metrics a role exports, and every alert is documented and tested."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from billing.invoice.worker import InvoicerMetrics
from billing.payments.metrics import PaymentMetrics
from billing.publish.relay import RelayMetrics
from billing.rate.metrics import RaterMetrics
from streams.metrics import SinkMetrics, WorkerMetrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ALERTS = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts.yml").read_text())
ALERT_TESTS = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts_test.yml").read_text())
PROMETHEUS_SERIES = {"up"}
"""Series Prometheus itself writes for every scrape target, not a role."""


def _script(name: str, path: Path) -> ModuleType:
    """A module of ops/ (scripts, not a package), loaded by path."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


dashboards = _script("ops_dashboards", ROOT / "ops" / "observability" / "dashboards.py")
promtool = _script("ops_promtool", ROOT / "ops" / "promtool.py")


def exported() -> set[str]:
    """Every series name the roles' registries can expose, with the suffixes Prometheus sees."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for metrics in (
        WorkerMetrics(),
        SinkMetrics(),
        RaterMetrics(),
        InvoicerMetrics(),
        RelayMetrics(),
        PaymentMetrics(),
    ):
        for family in metrics.registry.collect():
            names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


FUNCTIONS_AND_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers left once strings, label matchers,
    ranges, groupings and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\$\w+", "", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    identifiers = re.findall(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\(|[A-Za-z0-9_:])", text)
    return {name for name in identifiers if name not in FUNCTIONS_AND_KEYWORDS}


def _exprs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr" and isinstance(item, str):
                yield item
            else:
                yield from _exprs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _exprs(item)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{x="y"}[$__rate_interval])))',
            {"a_seconds_bucket"},
        ),
        ("time() - max(b_timestamp_seconds) > 600 or absent(c)", {"b_timestamp_seconds", "c"}),
        (
            'sum(rate(d_total{outcome="invalid"}[15m])) / sum without (instance) (rate(d_total[15m])) > 0.05',
            {"d_total"},
        ),
        ("(sum(e) or vector(0)) < 1 and on() f offset 5m", {"e", "f"}),
        ('up{job=~"rater|relay"} == 0', {"up"}),
    ],
)
def test_the_metric_names_of_an_expression_are_found(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_the_committed_dashboards_are_what_the_generator_builds() -> None:
    built = dashboards.dashboards()
    committed = {p.name for p in dashboards.OUT.glob("*.json")}
    assert committed == set(built), "a dashboard file without a generator entry, or the reverse"
    for name, board in built.items():
        assert (dashboards.OUT / name).read_text() == dashboards.render(board), (
            f"{name} is stale: run python ops/observability/dashboards.py"
        )


def test_every_dashboard_and_alert_query_names_only_exported_metrics() -> None:
    known = exported() | PROMETHEUS_SERIES
    exprs = [e for board in dashboards.dashboards().values() for e in _exprs(board)] + list(_exprs(ALERTS))
    assert len(exprs) > 40
    unknown = {expr: metric_names(expr) - known for expr in exprs if metric_names(expr) - known}
    assert unknown == {}
    assert all(metric_names(expr) for expr in exprs), "an expression that selects no metric"


def test_the_cross_check_catches_a_metric_no_role_exports() -> None:
    known = exported()
    assert "billing_usage_dead_letters_total" in known and "billing_sink_event_to_queryable_seconds_bucket" in known
    assert metric_names("sum(rate(billing_usage_dead_letter_total[5m]))") - known == {"billing_usage_dead_letter_total"}


def test_every_alert_is_documented_with_a_runbook_entry() -> None:
    headings = re.findall(r"^### (\w+)$", (ROOT / "docs" / "operations.md").read_text(), re.MULTILINE)
    alerts = [rule for group in ALERTS["groups"] for rule in group["rules"] if "alert" in rule]
    for rule in alerts:
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert annotations["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert rule["alert"] in headings, f"docs/operations.md has no '### {rule['alert']}'"


def test_every_alert_has_a_firing_case_in_the_promtool_tests() -> None:
    """An alert without a case in alerts_test.yml is untested, however green promtool is."""
    alerts = {rule["alert"] for group in ALERTS["groups"] for rule in group["rules"] if "alert" in rule}
    fired = {t["alertname"] for case in ALERT_TESTS["tests"] for t in case["alert_rule_test"] if t.get("exp_alerts")}
    assert alerts == fired


def test_promtool_without_go_fails_saying_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMTOOL_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(promtool.GoMissing, match="needs Go on PATH"):
        promtool.promtool()


def test_the_dashboards_read_the_provisioned_datasource_and_their_panels_have_unique_ids() -> None:
    provisioned = yaml.safe_load(
        (ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = provisioned["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus")
    for board in dashboards.dashboards().values():
        refs = {json.dumps(p["datasource"], sort_keys=True) for p in board["panels"] if "datasource" in p}  # type: ignore[attr-defined]
        assert refs == {json.dumps({"type": "prometheus", "uid": "prometheus"}, sort_keys=True)}
        ids = [p["id"] for p in board["panels"]]  # type: ignore[attr-defined]
        assert len(set(ids)) == len(ids) and None not in ids
