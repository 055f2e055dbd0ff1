"""``billing worker`` runs the whole loop as the README shows, as a user runs it: ``billing catalog
apply`` puts a catalog into PostgreSQL, ``billing worker`` (one process per role: usage worker,
rater, invoicer, relay) turns produced usage into finalized invoices on a clock the test sets, the
running result of the open period is served over gRPC, and SIGTERM stops it all. The invoices
equal ``billing simulate``'s for the same scenario."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka import Producer
from sqlalchemy import create_engine

from billing.clock import FileClock
from billing.simulate import Simulation, load_scenario
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from schemas import avro_codec
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2, invoice_pb2_grpc
from schemas.generated.smallbiznis.rating.v1 import rating_pb2, rating_pb2_grpc
from streams.ingest.producer import TUNING
from streams.kafka import messages
from streams.kafka.topics import PIPELINE_TOPICS, USAGE_EVENTS, ensure_topics
from streams.memory import MemoryUsageStore
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CASE = Path(__file__).parents[1] / "scenarios" / "cases" / "22_late_usage_adjustment.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (one metrics port per role)."""
    for _ in range(50):
        base = _free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError(f"no {count} consecutive free ports")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing.cli", *args], env=env, capture_output=True, text=True)


def test_billing_worker_runs_the_whole_loop(kafka_broker: Any, pg_url: str, tmp_path: Path) -> None:
    scenario = load_scenario(CASE)
    expected = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    prefix = f"loop-{uuid.uuid4().hex[:10]}."
    env = {**os.environ, "DATABASE_URL": pg_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    env.pop("CLICKHOUSE_URL", None)

    # as an operator would: the topics exist before producers write (a broker that creates them
    # on first use makes one partition, and the worker dead-letters events on the wrong one)
    ensure_topics(kafka_broker.bootstrap, 2, topics=[prefix + t for t in PIPELINE_TOPICS])
    applied = _cli("catalog", "apply", str(CASE), env=env)
    assert applied.returncode == 0, applied.stderr
    created = _cli("apikey", "create", "--tenant", scenario.tenant_id, env=env)  # the rater's gRPC needs a key
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]

    clock = tmp_path / "now"
    FileClock.set(clock, min(s.start_at for s in scenario.subscriptions))
    port = _free_port()
    data = tmp_path / "loop"
    command = [
        *(sys.executable, "-m", "billing.cli", "worker", "--topic-prefix", prefix, "--data-dir", str(data)),
        *("--partitions", "2", "--store", "memory", "--retention-days", "36500"),
        *("--clock-file", str(clock), "--grpc-port", str(port), "--log-level", "info"),
        *("--metrics-port", str(_free_ports(8)), "--api-port", str(api_port := _free_port())),
    ]
    supervisor_log = tmp_path / "worker.log"
    loop = subprocess.Popen(command, env=env, stdout=supervisor_log.open("wb"), stderr=subprocess.STDOUT)
    engine = create_engine(pg_url)
    ledger = PostgresLedger(engine)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, **TUNING})  # murmur2, as the worker checks
    try:
        instants = sorted({e.arrives_at for e in scenario.events} | {i.issued_at for i in expected if i.issued_at})
        for instant in instants:
            for event in (e for e in scenario.events if e.arrives_at == instant):
                usage = event.usage_event()
                value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(usage))
                producer.produce(prefix + USAGE_EVENTS, key=event.subscription_id.encode(), value=value)
            assert producer.flush(30) == 0
            FileClock.set(clock, instant)
            due = [i for i in expected if i.issued_at is not None and i.issued_at <= instant]
            _wait_for_invoices(ledger, scenario.tenant_id, len(due), instant, loop, supervisor_log, data)
            if instant == max(e.arrives_at for e in scenario.events):
                # the February event is in: the open period's running result, served over gRPC
                try:
                    _wait_for_running_usage(port, key, "s", "6", data)
                except AssertionError as error:
                    raise AssertionError(f"{error}\n{_topic_dump(kafka_broker.bootstrap, prefix)}") from None

        assert [invoice_to_dict(i) for i in _invoices(ledger, scenario.tenant_id)] == [
            invoice_to_dict(i) for i in expected
        ]
        _served_invoices(api_port, key, len(expected))
        _scrape_every_role(supervisor_log, scenario.tenant_id)
    finally:
        loop.send_signal(signal.SIGTERM)
        try:
            status = loop.wait(90)
        except subprocess.TimeoutExpired:
            loop.kill()
            raise
        engine.dispose()
    assert status == 0, supervisor_log.read_text()


def _served_invoices(port: int, key: str, count: int) -> None:
    """The loop's API role (``--api-port``: billing serve on the loop's ledger) lists the invoices."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ListInvoices(
            invoice_pb2.ListInvoicesRequest(page_size=100), metadata=[("authorization", f"Bearer {key}")], timeout=30
        )
    assert len(reply.invoices) == count, reply


ROLE_METRIC = {
    "usage": 'billing_usage_events_total{outcome="accepted"}',
    "rater": 'billing_rater_periods_handed_total{kind="period",tenant="%s"}',
    "invoicer": 'billing_invoicer_messages_total{outcome="finalized"}',
    "relay": 'billing_outbox_published_rows_total{topic="invoice.finalized"}',
    "api": 'grpc_server_handled_total{grpc_code="OK",grpc_method="ListInvoices",'
    'grpc_service="smallbiznis.invoice.v1.InvoiceService",grpc_type="unary"}',
}
"""Per role, a metric its work must have moved above zero by the time the invoices are in."""


def _scrape_every_role(supervisor_log: Path, tenant_id: str) -> None:
    """Each role's own metrics port (``--metrics-port`` of the loop: one per role, on loopback),
    scraped as Prometheus would; every role counted the work it did."""
    urls = {}
    for line in supervisor_log.read_text().splitlines():
        if "metrics on http://" in line:
            message = json.loads(line)["message"]  # role NAME: metrics on http://host:port/metrics
            urls[message.split()[1].rstrip(":")] = message.split("metrics on ")[1]
    assert {name.split("-")[0] for name in urls} == set(ROLE_METRIC), urls
    seen: dict[str, float] = {}
    for name, url in urls.items():
        assert url.startswith("http://127.0.0.1:"), url
        role = name.split("-")[0]
        wanted = ROLE_METRIC[role].replace("%s", tenant_id)
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(wanted + " ")]
        assert len(values) == 1, f"{name}: no {wanted} in\n{text[:2000]}"
        seen[role] = seen.get(role, 0) + values[0]
    assert all(seen[role] > 0 for role in ROLE_METRIC), seen


def _wait_for_invoices(
    ledger: PostgresLedger,
    tenant_id: str,
    due: int,
    instant: datetime,
    loop: subprocess.Popen[bytes],
    supervisor_log: Path,
    data: Path,
) -> None:
    """Until ``due`` invoices of the tenant are in the ledger, while the loop runs."""

    def loop_alive() -> None:
        assert loop.poll() is None, supervisor_log.read_text()

    wait_until(
        lambda: len(_invoices(ledger, tenant_id)) >= due,
        180,
        f"{due} invoices due by {instant}",
        interval=0.2,
        step=loop_alive,
        diagnose=lambda: _logs(data),
    )


def _wait_for_running_usage(port: int, key: str, subscription_id: str, quantity: str, data: Path) -> None:
    last = ""  # the last reply or error, for the failure message
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rating_pb2_grpc.RatingServiceStub(channel)  # type: ignore[no-untyped-call]

        def served() -> bool:
            nonlocal last
            try:
                request = rating_pb2.GetCurrentRatingRequest(subscription_id=subscription_id)
                reply = stub.GetCurrentRating(request, metadata=[("authorization", f"Bearer {key}")])
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise
                last = str(error)
                return False
            last = str(reply)
            return [item.quantity for item in reply.result.items] == [quantity]

        wait_until(
            served,
            120,
            f"a running result of {quantity}",
            interval=0.2,
            diagnose=lambda: f"{last}\n{_logs(data)}",
        )


def _topic_dump(bootstrap: str, prefix: str) -> str:
    from confluent_kafka import Consumer, TopicPartition

    out = []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dump-{uuid.uuid4().hex}"})
    for name in ("usage.events", "usage.dlq", "usage.accepted", "usage.windows", "rating.results"):
        topic = prefix + name
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts]
        out.append(f"{topic}: {ends}")
    dlq = prefix + "usage.dlq"
    consumer.assign([TopicPartition(dlq, p, 0) for p in consumer.list_topics(dlq, timeout=10).topics[dlq].partitions])
    for message in consumer.consume(100, timeout=3):
        value = message.value()
        if value:
            out.append(str(messages.read_dead_letter(value)["reason"]))
    consumer.close()
    return "\n".join(out)


def _invoices(ledger: PostgresLedger, tenant_id: str) -> list[Any]:
    with ledger.session() as session:
        return sorted(session.list_invoices(tenant_id), key=lambda i: i.invoice_number or "")


def _logs(data: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((data / "logs").glob("*.log")))
