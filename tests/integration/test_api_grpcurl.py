"""The API end to end as a user drives it: grpcurl (ops/grpcurl.py, installed from the Go module
proxy the first time) through server reflection, with an API key, against ``billing serve`` on the
real PostgreSQL, Kafka and chDB, and the period finalized by the loop (issue #13.4):

CreatePlan → CreateSubscription → IngestUsage (a batch with duplicates) → the usage pipeline →
GetUsageSummary (duplicates counted once) → RateSubscription → the loop's rater and invoice worker
finalize the period on their clock → GetInvoice equals ``billing simulate`` of the same scenario.

Embedded chDB has one owning process per directory (streams/clickhouse/ownership.py), and both the
loop's rater (which runs the sink that writes the store) and ``billing serve``'s usage RPCs need it.
So the flow runs in phases over one data directory, each store handed from one owner to the next as
a deployment on one machine would: (1) ``billing worker --role all`` with its API role (``billing
serve --usage-dir off``): the creates and the ingest, the rater's sink writes the usage and serves
the open period's running result; (2) the loop stopped, ``billing serve`` owns the usage store:
GetUsageSummary and RateSubscription; (3) serve stopped, the loop again with its clock past the
period: the rater hands the period over, the invoice worker finalizes it, and its API role answers
ListInvoices and GetInvoice. A ClickHouse server (CLICKHOUSE_URL) would let all of them run at once.

``test_grpcurl_generates_an_invoice_on_demand``: the same scenario finalized by a stored
GenerateInvoiceForSubscription (the on-demand path, no loop) gives the same invoice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from billing.api.keys import create_key
from billing.api_kafka import KafkaRecorder
from billing.clock import FileClock
from billing.simulate import Simulation, load_scenario
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger.api_keys import PostgresApiKeys
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from streams.clickhouse.store import ClickHouseUsageStore
from streams.kafka.topics import PIPELINE_TOPICS, USAGE_EVENTS, ensure_topics
from streams.memory import MemoryUsageStore
from streams.store.sink import SinkSettings, UsageSink
from tests.api_harness import Api, serving, terms
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

_spec_path = Path(__file__).resolve().parents[2] / "ops" / "grpcurl.py"
SUB = "sub_e2e"
SCENARIO = """
tenant_id: t1
metrics: [{code: api_calls, type: COUNTER, aggregation: SUM}, {code: storage_gb, type: COUNTER, aggregation: SUM}]
plans:
  - code: e2e
    currency_code: USD
    base_price: "49.00"
    billing_interval: month
    meters:
      - {metric_code: api_calls, pricing_model: PER_UNIT, included_units: "1000", unit_price: "0.002"}
tax_rules: [{region_code: ID, name: PPN, rate_percent: "11", is_default: true}]
subscriptions:
  - {id: sub_e2e, plan_code: e2e, start_at: "2026-02-01T00:00:00Z", region_code: ID}
events:
  - {subscription_id: sub_e2e, metric_code: api_calls,
     value: 1500, recorded_at: "2026-02-03T10:00:00Z", idempotency_key: k1}
  - {subscription_id: sub_e2e, metric_code: api_calls,
     value: 1500, recorded_at: "2026-02-03T10:00:00Z", idempotency_key: k1}
  - {subscription_id: sub_e2e, metric_code: api_calls,
     value: 700.5, recorded_at: "2026-02-14T23:59:59Z", idempotency_key: k2}
  - {subscription_id: sub_e2e, metric_code: api_calls,
     value: 0.25, recorded_at: "2026-02-28T23:59:59.999Z", idempotency_key: k3}
  - {subscription_id: sub_e2e, metric_code: api_calls,
     value: 700.5, recorded_at: "2026-02-14T23:59:59Z", idempotency_key: k2}
  - {subscription_id: sub_e2e, metric_code: api_calls,
     value: 9, recorded_at: "2026-03-01T00:00:00Z", idempotency_key: k4}
run_until: "2026-03-01T00:00:00Z"
"""


def _load_grpcurl() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("ops_grpcurl", _spec_path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault("ops_grpcurl", importlib.util.module_from_spec(spec))
    if not hasattr(module, "grpcurl"):
        spec.loader.exec_module(module)  # ops/grpcurl.py: standard library only, not a package
    return module


@pytest.fixture(scope="session")
def grpcurl() -> Path:
    ops_grpcurl = _load_grpcurl()
    try:
        return Path(ops_grpcurl.grpcurl())
    except ops_grpcurl.GoMissing as error:
        pytest.fail(str(error))


class Grpcurl:
    """grpcurl against one server with one tenant's key: JSON in, JSON out."""

    def __init__(self, binary: Path, port: int, key: str) -> None:
        self.binary, self.address, self.key = binary, f"127.0.0.1:{port}", key
        self.last = ""  # the last failure's stderr, for a wait's message

    def attempt(self, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The answer, or None when the call fails (the server not up yet, NOT_FOUND so far)."""
        command = [str(self.binary), "-plaintext", "-H", f"authorization: Bearer {self.key}", "-d", "@"]
        result = subprocess.run(
            [*command, self.address, method], input=json.dumps(body), capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            self.last = f"grpcurl {method}: {result.stderr}"
            return None
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def __call__(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.attempt(method, body)
        assert answer is not None, self.last
        return answer

    def list(self) -> list[str] | None:
        """The served services through reflection (no key needed); None while the server is not up."""
        result = subprocess.run(
            [str(self.binary), "-plaintext", self.address, "list"], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            self.last = f"grpcurl list: {result.stderr}"
            return None
        return result.stdout.split()


@pytest.fixture
def pipeline(
    engine: Engine, pg_url: str, kafka_broker: Any, chdb_client: Any, clickhouse_db: str, tmp_path: Path
) -> Iterator[Api]:
    """The server on this test's databases, its IngestUsage onto a fresh prefix's topic, and the
    usage pipeline of that prefix: the worker and relay as processes, the sink as a thread."""
    prefix = f"e2e-{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka_broker.bootstrap, 2, topics=[prefix + t for t in PIPELINE_TOPICS])
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    env = {**os.environ, "DATABASE_URL": pg_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    env.pop("CLICKHOUSE_URL", None)
    command = [
        *(sys.executable, "-m", "billing.cli", "worker", "--roles", "usage,relay", "--topic-prefix", prefix),
        *("--data-dir", str(tmp_path / "loop"), "--partitions", "2", "--store", "memory"),
        *("--retention-days", "36500", "--app-id", f"{prefix}usage"),
    ]
    log = tmp_path / "loop.log"
    loop = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    stop = threading.Event()
    sink = UsageSink(SinkSettings(kafka_broker.bootstrap, topic_prefix=prefix), store, now_ms=lambda: 0)
    sinking = threading.Thread(target=sink.run, args=(stop.is_set,), daemon=True)
    sinking.start()
    try:
        yield from serving(engine, store, KafkaRecorder(kafka_broker.bootstrap, prefix + USAGE_EVENTS))
    finally:
        stop.set()
        sinking.join(30)
        loop.send_signal(signal.SIGTERM)
        try:
            loop.wait(60)
        except subprocess.TimeoutExpired:
            loop.kill()
            loop.wait()


def _record(event: Any) -> dict[str, Any]:
    return {
        "subscription_id": event.subscription_id,
        "metric_code": event.metric_code,
        "value": float(event.value),
        "recorded_at": event.recorded_at.isoformat().replace("+00:00", "Z"),
        "idempotency_key": event.idempotency_key,
    }


def _units(money: dict[str, Any] | None) -> int:
    return int((money or {}).get("units", 0))


def _as_simulated(invoice: dict[str, Any]) -> dict[str, Any]:
    """GetInvoice's JSON (grpcurl's: proto field names, int64 as strings) in the shape of
    ``invoice_to_dict`` (what ``billing simulate`` prints)."""
    return {
        "subscription_id": invoice["subscription_id"],
        "invoice_number": invoice["invoice_number"],
        "status": invoice["status"].removeprefix("INVOICE_STATUS_"),
        "currency_code": invoice["currency_code"],
        "billing_period_start": invoice["billing_period_start"],
        "billing_period_end": invoice["billing_period_end"],
        "line_items": [
            {
                "type": line["type"].removeprefix("INVOICE_LINE_ITEM_TYPE_"),
                "description": line["description"],
                "metric_code": line.get("metric_code"),
                "quantity": line.get("quantity"),
                "unit_price": line.get("unit_price"),
                "amount": _units(line.get("amount")),
            }
            for line in invoice["line_items"]
        ],
        **{
            key: _units(invoice.get(field))
            for key, field in (
                ("subtotal", "subtotal"),
                ("discount_total", "discount_total"),
                ("tax_total", "tax_total"),
                ("total", "total"),
                ("credits_applied", "credits_applied"),
                ("amount_due", "amount_due"),
            )
        },
    }


def _expected(path: Path) -> dict[str, Any]:
    (invoice,) = Simulation(load_scenario(path), MemoryUsageStore(), MemoryLedger()).run().invoices
    simulated = invoice_to_dict(invoice)
    lines = [{k: v for k, v in line.items() if k != "metadata"} for line in simulated["line_items"]]
    fields = ("subscription_id", "invoice_number", "status", "currency_code", "billing_period_start")
    fields += ("billing_period_end", "subtotal", "discount_total", "tax_total", "total", "credits_applied")
    return {**{f: simulated[f] for f in fields}, "amount_due": simulated["amount_due"], "line_items": lines}


FEBRUARY = {"subscription_id": SUB, "start_time": "2026-02-01T00:00:00Z", "end_time": "2026-03-01T00:00:00Z"}
PERIOD = {"subscription_id": SUB, "period_start": FEBRUARY["start_time"], "period_end": FEBRUARY["end_time"]}


def _create_and_ingest(call: Grpcurl, scenario: Any) -> None:
    """CreatePlan, CreateSubscription and IngestUsage of the scenario's events, duplicates included."""
    plan = call(
        "smallbiznis.pricing.v1.PricingService/CreatePlan",
        {
            "plan": {
                "code": "e2e",
                "currency_code": "USD",
                "base_price": "49.00",
                "billing_interval": "BILLING_INTERVAL_MONTH",
                "meters": [
                    {
                        "metric_code": "api_calls",
                        "pricing_model": "PRICING_MODEL_PER_UNIT",
                        "included_units": "1000",
                        "unit_price": "0.002",
                    }
                ],
            }
        },
    )
    assert plan["plan"]["id"] == "e2e@1"
    created = call(
        "smallbiznis.subscription.v1.SubscriptionService/CreateSubscription",
        {"id": SUB, "plan_code": "e2e", "start_at": "2026-02-01T00:00:00Z", "region_code": "ID"},
    )
    assert created["subscription"]["id"] == SUB
    records = [_record(event) for event in scenario.events]
    ingested = call("smallbiznis.usage.v1.UsageService/IngestUsage", {"records": records})
    assert ingested["accepted_count"] == len(records)  # duplicates travel; the pipeline counts them once


def _february_summary(call: Grpcurl) -> dict[str, Any] | None:
    """February's one aggregation once its three distinct events are in the store, else None."""
    answer = call("smallbiznis.usage.v1.UsageService/GetUsageSummary", {**FEBRUARY, "granularity": ""})
    (aggregation,) = answer["aggregations"]
    return aggregation if aggregation.get("event_count") == "3" else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _running(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``billing …`` as a process (its output appended to ``log``), stopped with SIGTERM after, as
    an operator stops it; it must exit cleanly within the bound (then its stores are free)."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "billing.cli", *command], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"billing {command[0]} did not stop in 120 s\n{log.read_text()[-4000:]}") from None
    assert status == 0, f"billing {command[0]} exited with {status}\n{log.read_text()[-4000:]}"


def _logs(data: Path, *logs: Path) -> str:
    paths = [*sorted((data / "logs").glob("*.log")), *logs]
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in paths if p.exists())


def test_grpcurl_drives_the_api_and_the_loop_finalizes_the_simulated_invoice(
    engine: Engine, pg_url: str, kafka_broker: Any, grpcurl: Path, tmp_path: Path
) -> None:
    scenario_file = tmp_path / "e2e.yaml"
    scenario_file.write_text(SCENARIO)
    scenario = load_scenario(scenario_file)
    (simulated,) = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    assert simulated.issued_at is not None
    with PostgresLedger(engine).session() as session:
        session.save_terms(terms(scenario.tenant_id))  # the tenant's metrics and taxes, as the API tests have them
    key = create_key(PostgresApiKeys(engine), scenario.tenant_id, "test")[1]
    prefix = f"e2e-{uuid.uuid4().hex[:10]}."
    env = {**os.environ, "DATABASE_URL": pg_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    env.pop("CLICKHOUSE_URL", None)  # embedded chDB under the data directory, one owner at a time
    data, clock = tmp_path / "data", tmp_path / "now"
    FileClock.set(clock, min(s.start_at for s in scenario.subscriptions))
    api_port, rating_port = _free_port(), _free_port()
    loop = [
        *("worker", "--role", "all", "--topic-prefix", prefix, "--data-dir", str(data), "--partitions", "2"),
        *("--store", "memory", "--retention-days", "36500", "--clock-file", str(clock)),
        *("--grpc-port", str(rating_port), "--api-port", str(api_port)),  # the API role: serve --usage-dir off
    ]
    loop_log, serve_log = tmp_path / "loop.log", tmp_path / "serve.log"
    call = Grpcurl(grpcurl, api_port, key)
    rating = Grpcurl(grpcurl, rating_port, key)

    def up(server: Grpcurl, process: subprocess.Popen[bytes], log: Path) -> None:
        def alive() -> None:
            assert process.poll() is None, _logs(data, log)

        services = wait_until(server.list, 180, f"a server on {server.address}", interval=0.5, step=alive)
        assert "smallbiznis.invoice.v1.InvoiceService" in services  # reflection, no key needed

    # (1) the loop owns the usage store (its rater runs the sink), on a clock inside February
    with _running(loop, env, loop_log) as process:
        up(call, process, loop_log)
        _create_and_ingest(call, scenario)
        # the rater's sink wrote the deduplicated usage: the open period's running result says so
        get_current = "smallbiznis.rating.v1.RatingService/GetCurrentRating"

        def running() -> dict[str, Any] | None:
            answer = rating.attempt(get_current, {"subscription_id": SUB})
            items = [] if answer is None else answer["result"].get("items", [])
            return answer if [item["quantity"] for item in items] == ["2200.75"] else None

        wait_until(
            running,
            240,
            "the running result of February's usage",
            interval=1,
            step=lambda: assert_alive(process),
            diagnose=lambda: f"{rating.last}\n{_logs(data, loop_log)}",
        )

    # (2) billing serve owns the usage store: the usage RPCs read what the loop's sink wrote
    serve = ["serve", "--port", str(serve_port := _free_port()), "--data-dir", str(data / "ledger")]
    serve += ["--usage-dir", str(data / "usage"), "--topic-prefix", prefix]  # the rater's chDB directory
    server = Grpcurl(grpcurl, serve_port, key)
    with _running(serve, env, serve_log) as process:
        up(server, process, serve_log)
        aggregation = _february_summary(server)
        assert aggregation is not None, "the three distinct February events in the usage store"
        assert aggregation["total_value"] == "2200.75"  # 1500 + 700.5 + 0.25, each once; March's 9 is not February's
        rated = server("smallbiznis.rating.v1.RatingService/RateSubscription", PERIOD)
        (item,) = rated["result"]["items"]
        assert (item["quantity"], _units(item["amount"])) == ("2200.75", 240)  # 1200.75 above 1000 at 0.002
        assert server("smallbiznis.invoice.v1.InvoiceService/ListInvoices", {}).get("invoices", []) == []

    # (3) the loop again, its clock where the period falls due: the rater hands it over, the
    # invoice worker finalizes it, and the loop's API role serves it
    FileClock.set(clock, simulated.issued_at)
    with _running(loop, env, loop_log) as process:
        up(call, process, loop_log)

        def listed() -> list[dict[str, Any]] | None:
            answer = call.attempt("smallbiznis.invoice.v1.InvoiceService/ListInvoices", {})
            return None if answer is None else answer.get("invoices")

        (invoice,) = wait_until(
            listed,
            240,
            "the invoice the loop finalizes",
            interval=1,
            step=lambda: assert_alive(process),
            diagnose=lambda: f"{call.last}\n{_logs(data, loop_log)}",
        )
        got = call("smallbiznis.invoice.v1.InvoiceService/GetInvoice", {"id": invoice["id"]})
    assert _as_simulated(got["invoice"]) == _expected(scenario_file)
    assert got["invoice"]["status"] == "INVOICE_STATUS_PENDING"


def assert_alive(process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, f"the loop exited with {process.returncode}"


def test_grpcurl_generates_an_invoice_on_demand(pipeline: Api, grpcurl: Path, tmp_path: Path) -> None:
    """The on-demand path: GenerateInvoiceForSubscription stores the period's invoice (the invoice
    worker's own finalizing step) without the loop, and it is the simulated one too."""
    scenario_file = tmp_path / "e2e.yaml"
    scenario_file.write_text(SCENARIO)
    call = Grpcurl(grpcurl, pipeline.port, pipeline.keys["t1"])
    _create_and_ingest(call, load_scenario(scenario_file))
    wait_until(
        lambda: _february_summary(call), 120, "the three distinct February events in the usage store", interval=1
    )
    generated = call("smallbiznis.invoice.v1.InvoiceService/GenerateInvoiceForSubscription", PERIOD)
    got = call("smallbiznis.invoice.v1.InvoiceService/GetInvoice", {"id": generated["invoice"]["id"]})
    assert _as_simulated(got["invoice"]) == _expected(scenario_file)
    assert got["invoice"]["status"] == "INVOICE_STATUS_PENDING"
