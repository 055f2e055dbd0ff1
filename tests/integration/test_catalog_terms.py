"""Tenants' terms on ``catalog.terms`` and ``billing catalog apply``, on the real PostgreSQL and
broker: golden scenario files applied twice queue and publish each terms, plan and subscription
record once, and the published values read back as what the files define; an edited file
publishes its changes (a new plan version, new revisions); a bad file exits 2 naming the field and
stores nothing, even when the ledger refuses it halfway; concurrent saves of one tenant's terms
take turns, and so do the file and the CreatePlan RPC writing one plan code; the memory ledger
queues the same messages as PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from sqlalchemy import Engine, func, select

from billing.catalog_cli import apply_catalog
from billing.cli import main
from billing.publish.relay import OutboxRelay, RelaySettings
from billing.simulate.runner import terms_of
from billing.simulate.scenario import Scenario
from billing.simulate.scenario_file import load_scenario
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.subscriptions import SubscriptionStatus
from invoicing.engine.tax import TaxRule
from invoicing.engine.terms import BillingTerms
from invoicing.ledger import tables
from invoicing.ledger.catalog import plan_key
from invoicing.ledger.json_codec import (
    plan_from_json,
    subscription_from_json,
    terms_from_json,
    terms_record_from_json,
    terms_to_json,
)
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ledger.postgres_api import PostgresApiLedger
from invoicing.ports import OutboxMessage
from rating.catalog import Plan
from rating.errors import BillingError
from streams.kafka.topics import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS, CATALOG_TOPICS
from tests.integration.test_outbox_relay import (
    Published,
    assert_exactly_once,
    committed_rows,
    own_relay_settings,
    published,
)
from tests.kafka_fixtures import Broker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "scenarios" / "cases"
# metrics of every aggregation; two plans; four coupons; five tax rules (two in one region)
FILES = (
    "04_every_aggregation.yaml",
    "13_plan_change_proration.yaml",
    "17_coupons.yaml",
    "18_tax_exclusive_by_region.yaml",
)


@pytest.fixture
def settings(kafka_broker: Broker) -> RelaySettings:
    """A relay of its own that creates the catalog topics (compacted) if they are missing."""
    return own_relay_settings(kafka_broker.bootstrap, batch_size=7, partitions=3, create_topics=CATALOG_TOPICS)


def tenant_copy(case: str, tmp_path: Path, token: str, edit: Any = None) -> Path:
    """The golden file under a tenant of this run (and its subscription ids under it: they are
    keys across tenants), so records of other runs on a shared broker never match; ``edit``
    changes the parsed file before it is written."""
    raw = yaml.safe_load((CASES / case).read_text(encoding="utf-8"))
    tenant = raw["tenant_id"] = f"{token}-{case[:2]}"
    ids = {s["id"]: f"{tenant}/{s['id']}" for s in raw.get("subscriptions") or []}
    for item in (*(raw.get("subscriptions") or []), *(raw.get("events") or []), *(raw.get("actions") or [])):
        for key in ("id", "subscription_id"):
            if item.get(key) in ids:
                item[key] = ids[item[key]]
    if edit is not None:
        edit(raw)
    path = tmp_path / f"{token}-{case}"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def apply(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``billing catalog apply`` through the CLI's entry point (DATABASE_URL set by the test)."""
    capsys.readouterr()
    assert main(["catalog", "apply", str(path)]) == 0
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    return summary


def changes(summary: dict[str, Any]) -> Counter[str]:
    items = [summary["terms"], *summary["plans"], *summary["subscriptions"]]
    return Counter(item["change"] for item in items)


def outbox_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(tables.outbox)).scalar_one())


def relay(engine: Engine, settings: RelaySettings) -> int:
    return OutboxRelay(engine, settings).run(threading.Event(), until_idle=True).published


def records(bootstrap: str, token: str) -> list[Published]:
    """The catalog records of this run's tenants, in outbox order."""
    got = [p for p in published(bootstrap, list(CATALOG_TOPICS)) if p.key.startswith(token)]
    return sorted(got, key=lambda p: p.outbox_id)


def assert_published_as_defined(got: list[Published], scenario: Scenario, version: int, revision: int) -> None:
    """The newest record of each of the scenario's keys reads back as what the file defines."""
    newest = {(p.topic, p.key): p.payload for p in got}
    tenant = scenario.tenant_id
    terms = newest[(CATALOG_TERMS, tenant)]
    assert terms == {**terms_to_json(terms_of(scenario)), "revision": revision}  # helper B's format, exactly
    assert terms_from_json(terms) == terms_of(scenario)
    assert terms_record_from_json(terms).revision == revision
    for plan in scenario.plans:
        value = newest[(CATALOG_PLANS, plan_key(tenant, plan.code, version))]
        assert value["tenant_id"] == tenant
        assert plan_from_json(value) == replace(plan, version=version)
    for sub in scenario.subscriptions:
        record = subscription_from_json(newest[(CATALOG_SUBSCRIPTIONS, sub.id)])
        assert record.subscription == sub
        assert (record.plan_version, record.status) == (version, SubscriptionStatus.ACTIVE)
        assert record.billing_interval == scenario.plan(sub.plan_code).billing_interval


def test_golden_files_applied_twice_publish_each_record_once_as_the_files_define(
    engine: Engine,
    settings: RelaySettings,
    kafka_broker: Broker,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    token = f"t{uuid.uuid4().hex[:8]}"
    files = [tenant_copy(case, tmp_path, token) for case in FILES]
    scenarios = [load_scenario(path) for path in files]
    expected = {s.tenant_id: 1 + len(s.plans) + len(s.subscriptions) for s in scenarios}
    assert sum(expected.values()) >= 15 and any(s.tax_rules for s in scenarios) and any(s.coupons for s in scenarios)

    first = [apply(path, capsys) for path in files]
    for summary, scenario in zip(first, scenarios, strict=True):
        assert changes(summary) == {"created": expected[scenario.tenant_id]}
        assert summary["queued"] == expected[scenario.tenant_id]
        assert {p["version"] for p in summary["plans"]} <= {1}
    queued = outbox_count(engine)
    assert queued == sum(expected.values())
    again = [apply(path, capsys) for path in files]
    assert [changes(s) for s in again] == [{"unchanged": expected[s.tenant_id]} for s in scenarios]
    assert [s["queued"] for s in again] == [0] * len(files)
    assert outbox_count(engine) == queued  # nothing queued the second time

    assert relay(engine, settings) == queued
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, CATALOG_TERMS)
    assert admin.describe_configs([resource])[resource].result()["cleanup.policy"].value == "compact"
    got = records(kafka_broker.bootstrap, token)
    assert_exactly_once(engine, got, CATALOG_TOPICS, kafka_broker.bootstrap)
    assert Counter((p.topic, p.key) for p in got) == Counter({(p.topic, p.key): 1 for p in got})  # once per key
    assert len(got) == queued
    for scenario in scenarios:
        assert_published_as_defined(got, scenario, version=1, revision=1)

    for path in files:  # applied a third time, after the relay ran: still nothing to publish
        assert apply(path, capsys)["queued"] == 0
    assert relay(engine, settings) == 0


def test_an_edited_file_publishes_a_new_plan_version_and_the_changed_revisions(
    engine: Engine,
    settings: RelaySettings,
    kafka_broker: Broker,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    token = f"t{uuid.uuid4().hex[:8]}"
    case = "13_plan_change_proration.yaml"
    apply(tenant_copy(case, tmp_path, token), capsys)

    def edit(raw: dict[str, Any]) -> None:
        raw["plans"][0]["base_price"] = "33.00"  # pro, the plan of sub_1; team stays as it was
        raw["tax_rules"] = [{"region_code": "ID", "name": "PPN", "rate_percent": "11", "is_default": True}]

    edited = tenant_copy(case, tmp_path, token, edit)
    summary = apply(edited, capsys)
    tenant = f"{token}-13"
    assert summary["terms"] == {"revision": 2, "change": "changed"}
    assert summary["plans"] == [
        {"code": "pro", "version": 2, "change": "changed"},
        {"code": "team", "version": 1, "change": "unchanged"},
    ]
    assert summary["subscriptions"] == [
        {"id": f"{tenant}/sub_1", "plan_code": "pro", "plan_version": 2, "revision": 2, "change": "changed"}
    ]
    assert summary["queued"] == 3
    assert apply(edited, capsys)["queued"] == 0

    assert relay(engine, settings) == 4 + 3  # the first apply's terms, two plans and subscription too
    got = records(kafka_broker.bootstrap, token)
    assert [(p.topic, p.key) for p in got[-3:]] == [
        (CATALOG_TERMS, tenant),
        (CATALOG_PLANS, f"{tenant}/pro/2"),
        (CATALOG_SUBSCRIPTIONS, f"{tenant}/sub_1"),
    ]
    scenario = load_scenario(edited)
    terms = terms_record_from_json(got[-3].payload)
    assert (terms.terms, terms.revision) == (terms_of(scenario), 2)
    assert terms.terms.tax_rules == (TaxRule("ID", "PPN", Decimal(11), True),)
    assert plan_from_json(got[-2].payload) == replace(scenario.plan("pro"), version=2)
    assert plan_from_json(got[-2].payload).base_price == Decimal("33.00")
    record = subscription_from_json(got[-1].payload)
    assert (record.subscription, record.plan_version, record.revision) == (scenario.subscriptions[0], 2, 2)
    with PostgresLedger(engine).session() as session:  # version 1 is kept as it was
        old = session.get_plan(tenant, "pro", 1)
    assert old is not None and old.base_price == Decimal("31.00")


def run_cli(*args: str, pg_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": pg_url}
    command = [sys.executable, "-m", "billing.cli", "catalog", *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_bad_file_exits_2_naming_the_field_and_stores_nothing(engine: Engine, pg_url: str, tmp_path: Path) -> None:
    token = f"t{uuid.uuid4().hex[:8]}"

    def bad_price(raw: dict[str, Any]) -> None:
        raw["plans"][1]["meters"][0]["unit_price"] = "0.1.0"

    done = run_cli(
        "apply", str(tenant_copy("13_plan_change_proration.yaml", tmp_path, token, bad_price)), pg_url=pg_url
    )
    assert done.returncode == 2, done.stderr
    assert "plans[1].meters[0].unit_price" in done.stderr and done.stdout == ""
    assert outbox_count(engine) == 0

    # valid as a file, refused by the ledger halfway: subscription "shared" is another tenant's
    def shared(raw: dict[str, Any]) -> None:
        raw["subscriptions"][0]["id"] = f"{token}/shared"

    owner = tenant_copy("01_usd_sub_cent_rounding.yaml", tmp_path, token, shared)
    assert run_cli("apply", str(owner), pg_url=pg_url).returncode == 0
    before = committed_rows(engine)
    with engine.connect() as connection:
        stored_terms = connection.execute(select(tables.tenant_terms)).all()
    intruder = tenant_copy("18_tax_exclusive_by_region.yaml", tmp_path, token, shared)
    done = run_cli("apply", str(intruder), pg_url=pg_url)
    assert done.returncode == 2, done.stderr
    assert "subscriptions[0].tenant_id" in done.stderr
    assert committed_rows(engine) == before  # its terms and plan were saved first: rolled back with it
    with engine.connect() as connection:
        assert connection.execute(select(tables.tenant_terms)).all() == stored_terms
        assert connection.execute(select(func.count()).select_from(tables.plans)).scalar_one() == 1

    shown = run_cli("show", pg_url=pg_url)
    assert shown.returncode == 0, shown.stderr
    catalog = json.loads(shown.stdout)
    assert [t["tenant_id"] for t in catalog["terms"]] == [f"{token}-01"]
    assert [s["id"] for s in catalog["subscriptions"]] == [f"{token}/shared"]
    assert [(p["tenant_id"], p["code"], p["version"]) for p in catalog["plans"]] == [(f"{token}-01", "basic", 1)]


def test_concurrent_saves_of_one_tenants_terms_take_turns(engine: Engine) -> None:
    """Every save changes the terms; the row lock makes each one see the last committed revision,
    so revisions are 1..n without a repeat and the outbox holds them in commit (id) order."""
    ledger = PostgresLedger(engine)
    writers, saves = 4, 12
    errors: list[BaseException] = []

    def terms(writer: int, n: int) -> BillingTerms:
        return BillingTerms("t1", {}, (TaxRule("ID", "PPN", Decimal(f"{writer}.{n:02d}")),))

    def save_many(writer: int) -> None:
        try:
            for n in range(saves):
                with ledger.session() as session:
                    session.save_terms(terms(writer, n))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=save_many, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = list(committed_rows(engine, CATALOG_TERMS).values())
    assert [payload["revision"] for _, _, payload in rows] == list(range(1, writers * saves + 1))
    with ledger.session() as session:
        stored = session.get_terms("t1")
    assert stored is not None and stored.revision == writers * saves
    assert stored.terms == terms_from_json(rows[-1][2])  # the last message is what is stored


def test_the_memory_ledger_queues_what_postgresql_queues(engine: Engine, tmp_path: Path) -> None:
    token = f"t{uuid.uuid4().hex[:8]}"
    scenarios = [load_scenario(tenant_copy(case, tmp_path, token)) for case in FILES]
    edited = replace(
        scenarios[1],
        plans=(replace(scenarios[1].plans[0], name="Pro"), *scenarios[1].plans[1:]),
        coupons=(*scenarios[2].coupons[:1],),
    )

    def run(ledger: Any) -> list[dict[str, Any]]:
        summaries = [apply_catalog(ledger, s) for s in scenarios]
        summaries += [apply_catalog(ledger, s) for s in scenarios]
        summaries.append(apply_catalog(ledger, edited))
        return summaries

    memory = MemoryLedger()
    assert run(memory) == run(PostgresLedger(engine))
    in_postgres = [OutboxMessage(*row) for row in committed_rows(engine).values()]
    assert memory.state.outbox == in_postgres
    assert [m.topic for m in in_postgres].count(CATALOG_TERMS) == len(FILES) + 1
    with memory.session() as session:
        record = session.get_terms(edited.tenant_id)
    assert record is not None and (record.terms, record.revision) == (terms_of(edited), 2)


RULE = {"region_code": "ID", "name": "PPN", "rate_percent": "11", "is_default": True, "is_active": True}
COUPON = {"code": "W", "percent_off": None, "amount_off": "5", "duration": "once", "duration_in_periods": None}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"revision": 0}, "at.revision"),
        ({"revision": True}, "at.revision"),
        ({"revision": "2"}, "at.revision"),
        ({"tax_rules": [{**RULE, "rate_percent": "101"}]}, "at.tax_rules[0].rate_percent"),
        ({"coupons": [{**COUPON, "amount_off": "1e999999999"}]}, "at.coupons[0].amount_off"),
        ({"payment_terms": {"net_days": -1}}, "at.payment_terms.net_days"),
        ({"payment_terms": {"retry_days": [3, 1]}}, "at.payment_terms.retry_days[1]"),
        ({"payment_terms": {"retry_days": "1,3"}}, "at.payment_terms.retry_days"),
        ({"payment_terms": {"grace_days": 1}}, "at.payment_terms.grace_days"),
        ({"payment_terms": [7]}, "at.payment_terms"),
    ],
)
def test_a_bad_catalog_terms_value_is_an_error_naming_its_field(change: dict[str, Any], field: str) -> None:
    """What a worker reading ``catalog.terms`` gets from a value it cannot use (no database needed)."""
    good = {**terms_to_json(BillingTerms("t1", {}, (TaxRule("ID", "PPN", Decimal(11)),))), "revision": 1}
    good["coupons"] = [COUPON]
    assert terms_record_from_json(good, at="at").revision == 1
    with pytest.raises(BillingError) as error:
        terms_record_from_json({**good, **change}, at="at")
    assert error.value.field == field


def test_payment_terms_travel_with_the_terms_and_defaults_add_nothing() -> None:
    plain = BillingTerms("t1", {}, (), {})
    assert "payment_terms" not in terms_to_json(plain)  # terms stored before payments compare the same
    paying = replace(plain, payment_terms=PaymentTerms(net_days=7, retry_days=(1, 3), cancel_after_days=10))
    value = terms_to_json(paying)
    assert value["payment_terms"] == {"net_days": 7, "retry_days": [1, 3], "cancel_after_days": 10}
    assert terms_from_json(value) == paying


def test_catalog_apply_and_create_plan_racing_on_one_code_each_get_their_own_version(engine: Engine) -> None:
    """``billing catalog apply`` and the CreatePlan RPC, each changing the prices of one plan code
    at the same moment, round after round: every price written is a version of its own, versions
    are 1..n without a gap or repeat, and no writer fails."""
    ledger = PostgresLedger(engine)
    api = PostgresApiLedger(ledger)
    rounds = 25
    start = datetime(2026, 1, 1, tzinfo=UTC)
    base = Scenario("t1", (), (), (), (), (), (), (), start)
    errors: list[BaseException] = []

    def plan(price: str) -> Plan:
        return Plan("pro", "USD", Decimal(price))

    def race(n: int) -> None:
        barrier = threading.Barrier(2)

        def by_file() -> None:
            barrier.wait()
            apply_catalog(ledger, replace(base, plans=(plan(f"1{n:02d}.00"),)))

        def by_rpc() -> None:
            barrier.wait()
            api.create_plan("t1", plan(f"2{n:02d}.00"))

        def guarded(write: Any) -> None:
            try:
                write()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=guarded, args=(write,)) for write in (by_file, by_rpc)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for n in range(rounds):
        race(n)
    assert errors == []
    with engine.connect() as connection:
        rows = connection.execute(
            select(tables.plans.c.version, tables.plans.c.snapshot).order_by(tables.plans.c.version)
        ).all()
    assert [row.version for row in rows] == list(range(1, 2 * rounds + 1))
    prices = sorted(plan_from_json(row.snapshot).base_price for row in rows)
    written = sorted(Decimal(f"{writer}{n:02d}.00") for writer in (1, 2) for n in range(rounds))
    assert prices == written  # no version overwritten by another writer's prices
    published = [key for _, key, _ in committed_rows(engine).values() if key.startswith("t1/pro/")]
    assert sorted(published) == sorted(plan_key("t1", "pro", v) for v in range(1, 2 * rounds + 1))
