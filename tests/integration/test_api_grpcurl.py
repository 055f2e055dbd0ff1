"""The API end to end as a user drives it: grpcurl (ops/grpcurl.py, installed from the Go module
proxy the first time) through server reflection, with an API key, against ``billing serve``'s server
on the real PostgreSQL, Kafka and chDB (issue #13.4):

CreatePlan → CreateSubscription → IngestUsage (a batch with duplicates) → the real usage pipeline
(``billing worker --roles usage,relay`` as processes, the sink in this process because it shares the
server's embedded chDB) → GetUsageSummary (duplicates counted once) → RateSubscription →
GenerateInvoiceForSubscription finalizes the period → GetInvoice equals ``billing simulate`` of the
same scenario.

The period is finalized by GenerateInvoiceForSubscription rather than by the loop's rater and
invoicer: embedded chDB belongs to one process, and here the server owns it for the usage RPCs, so a
rater process could not read it (a deployment shares one ClickHouse server instead). The finalizing
step is the invoicer's own (``InvoiceFinalizer.finalize``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from billing.api_kafka import KafkaRecorder
from billing.simulate import Simulation, load_scenario
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger.memory import MemoryLedger
from streams.clickhouse.store import ClickHouseUsageStore
from streams.kafka.topics import PIPELINE_TOPICS, USAGE_EVENTS, ensure_topics
from streams.memory import MemoryUsageStore
from streams.store.sink import SinkSettings, UsageSink
from tests.api_harness import Api, serving
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

    def __call__(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        command = [str(self.binary), "-plaintext", "-H", f"authorization: Bearer {self.key}", "-d", "@"]
        result = subprocess.run(
            [*command, self.address, method], input=json.dumps(body), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"grpcurl {method}: {result.stderr}"
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def list(self) -> list[str]:
        result = subprocess.run(
            [str(self.binary), "-plaintext", self.address, "list"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
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


def test_grpcurl_drives_the_api_from_plan_to_the_simulated_invoice(
    pipeline: Api, grpcurl: Path, tmp_path: Path
) -> None:
    api = pipeline
    scenario_file = tmp_path / "e2e.yaml"
    scenario_file.write_text(SCENARIO)
    scenario = load_scenario(scenario_file)
    call = Grpcurl(grpcurl, api.port, api.keys["t1"])
    assert "smallbiznis.invoice.v1.InvoiceService" in call.list()  # reflection, no key needed

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

    february = {"subscription_id": SUB, "start_time": "2026-02-01T00:00:00Z", "end_time": "2026-03-01T00:00:00Z"}

    def summarized() -> dict[str, Any] | None:
        answer = call("smallbiznis.usage.v1.UsageService/GetUsageSummary", {**february, "granularity": ""})
        (aggregation,) = answer["aggregations"]
        return aggregation if aggregation.get("event_count") == "3" else None

    aggregation = wait_until(summarized, 120, "the three distinct February events in the usage store", interval=1)
    assert aggregation["total_value"] == "2200.75"  # 1500 + 700.5 + 0.25, each once; March's 9 is not February's
    rated = call(
        "smallbiznis.rating.v1.RatingService/RateSubscription",
        {"subscription_id": SUB, "period_start": february["start_time"], "period_end": february["end_time"]},
    )
    (item,) = rated["result"]["items"]
    assert (item["quantity"], _units(item["amount"])) == ("2200.75", 240)  # 1200.75 above 1000 at 0.002

    generated = call(
        "smallbiznis.invoice.v1.InvoiceService/GenerateInvoiceForSubscription",
        {"subscription_id": SUB, "period_start": february["start_time"], "period_end": february["end_time"]},
    )
    got = call("smallbiznis.invoice.v1.InvoiceService/GetInvoice", {"id": generated["invoice"]["id"]})
    assert _as_simulated(got["invoice"]) == _expected(scenario_file)
    assert got["invoice"]["status"] == "INVOICE_STATUS_PENDING"
