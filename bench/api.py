"""Benchmark: ``billing serve``'s API over gRPC, with real clients on TCP, against the embedded
stores (or DATABASE_URL / CLICKHOUSE_URL) and a real Kafka broker (KAFKA_BOOTSTRAP_SERVERS, else
one started by ops/kafka.py in a temporary directory). In one run:

1. **IngestUsage** (the batch form, ``--batch`` events a call, one client): events/s until Kafka
   acknowledged every event (acks=all), beside the SDK's own producer (``billing.sdk.BillingClient``,
   batched the same) sending the same number of events onto another topic: the ratio says what
   the API costs over the producer it wraps.
2. **GetInvoice** and **ListInvoices** p50/p99 over ``--invoices`` invoices of one tenant, stored in
   bulk through the ledger (finalized drafts added in ledger batches of 2,000, numbered from the
   tenant's gapless sequence as finalization numbers them): GetInvoice of random ids, ListInvoices
   pages of 50 at random keyset tokens, and of one subscription's invoices.
3. **GetUsageSummary** p50/p99 over ``--events`` raw events of one subscription (loaded in bulk with
   ``INSERT … SELECT … FROM numbers()``, with their 15-minute buckets and roll-up columns), by day
   over the 25 days they span and uncut over the whole span; each answer is checked against a SQL
   sum of the raw events.

Usage: python bench/api.py [--events 10000000] [--invoices 100000] [--ingest 200000] [--batch 1000]
       [--reads 300] [--summary-reads 50] [--quick]
``--quick`` is a smoke run (100k events, 2,000 invoices, 20,000 ingested).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from billing_run import METRICS, OPEN_START, PLAN, load_latency_usage  # bench/billing_run.py

from billing.api.keys import create_key
from billing.api.paging import encode_token
from billing.api.server import ApiServer
from billing.api_kafka import KafkaRecorder
from billing.clock import TestClock
from billing.sdk import BillingClient
from billing.stores import Stores, open_stores
from billing.usage_reader import StoreUsageReader
from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.model import InvoiceLineItem, LineType
from invoicing.engine.subscriptions import Subscription
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.api_keys import PostgresApiKeys
from invoicing.ledger.embedded import stop_embedded_database
from invoicing.ledger.postgres_api import PostgresApiLedger
from rating.money import Money
from rating.periods import Period
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2, invoice_pb2_grpc
from schemas.generated.smallbiznis.usage.v1 import usage_pb2, usage_pb2_grpc
from streams.clickhouse.events import ClickHouseEventLog
from streams.kafka.topics import ensure_topics

TENANT = "latency"  # bench/billing_run.py's tenant of the loaded events
NOW = datetime(2026, 6, 1, tzinfo=UTC)
INVOICE_BATCH = 2000


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], ms[-1]


def timed(action: Callable[[], Any], times: int, warmup: int = 10) -> str:
    for _ in range(warmup):
        action()
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    p50, p99, worst = percentiles(seconds)
    return f"{times} calls: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms"


@contextmanager
def kafka(directory: Path) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS, else a broker of ops/kafka.py in ``directory`` for the run."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    spec = importlib.util.spec_from_file_location("ops_kafka", Path(__file__).resolve().parents[1] / "ops" / "kafka.py")
    assert spec is not None and spec.loader is not None
    ops_kafka = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ops_kafka)  # ops/kafka.py: standard library only, not a package
    broker = ops_kafka.KafkaBroker(directory).start()
    try:
        yield str(broker.bootstrap)
    finally:
        broker.stop()


def catalog(stores: Stores, subscription_id: str) -> str:
    """The tenant's terms, plan and subscription in the ledger; a key of the tenant."""
    with stores.ledger.session() as session:
        session.save_terms(BillingTerms(TENANT, {m.code: m for m in METRICS}))
        if session.get_plan(TENANT, PLAN.code, PLAN.version) is None:
            session.save_plan(TENANT, PLAN)
        session.save_subscription(Subscription(subscription_id, TENANT, PLAN.code, OPEN_START))
    return create_key(PostgresApiKeys(stores.engine), TENANT, "bench")[1]


def ingest(channel: grpc.Channel, auth: Any, bootstrap: str, sdk_topic: str, sub: str, args: Any) -> None:
    stub = usage_pb2_grpc.UsageServiceStub(channel)  # type: ignore[no-untyped-call]
    run = uuid.uuid4().hex[:8]
    batches = []
    for first in range(0, args.ingest, args.batch):
        records = []
        for n in range(first, min(args.ingest, first + args.batch)):
            record = usage_pb2.UsageRecord(
                subscription_id=sub, metric_code="api_calls", value=float(n % 100 + 1), idempotency_key=f"{run}-{n}"
            )
            record.recorded_at.FromDatetime(OPEN_START + timedelta(milliseconds=n))
            records.append(record)
        batches.append(usage_pb2.IngestUsageRequest(records=records))
    stub.IngestUsage(batches[0], metadata=auth, timeout=60)  # the server's producer connects (not timed)
    started = time.perf_counter()
    accepted = sum(stub.IngestUsage(b, metadata=auth, timeout=60).accepted_count for b in batches)
    api_seconds = time.perf_counter() - started
    assert accepted == args.ingest, accepted
    with BillingClient(bootstrap, batch_size=min(args.batch, 500), topic=sdk_topic) as client:
        client.record_usage(TENANT, sub, "api_calls", 1, OPEN_START, idempotency_key=f"{run}-warm")
        client.flush()
        started = time.perf_counter()
        for n in range(args.ingest):
            at = OPEN_START + timedelta(milliseconds=n)
            client.record_usage(TENANT, sub, "api_calls", n % 100 + 1, at, idempotency_key=f"{run}-sdk-{n}")
        client.flush()
        sdk_seconds = time.perf_counter() - started
    api_rate, sdk_rate = args.ingest / api_seconds, args.ingest / sdk_seconds
    print(
        f"IngestUsage (batch form, {args.batch} events a call, one client, acks=all): {args.ingest:,} events in "
        f"{api_seconds:.2f} s = {api_rate:,.0f} events/s; SDK producer (BillingClient, same events): "
        f"{sdk_rate:,.0f} events/s; API / SDK = {api_rate / sdk_rate:.2f}"
    )


def store_invoices(stores: Stores, count: int) -> None:
    """``count`` finalized invoices of TENANT (100 subscriptions, monthly periods), in ledger batches."""
    started = time.perf_counter()
    stored = 0
    while stored < count:
        size = min(INVOICE_BATCH, count - stored)
        with stores.ledger.batch(), stores.ledger.session() as session:
            for n in range(stored, stored + size):
                start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(days=31 * (n // 100))
                line = InvoiceLineItem(LineType.RECURRING, "Pro — monthly fee", Money(4900 + n % 7, "USD"))
                draft = compose_invoice(
                    tenant_id=TENANT,
                    subscription_id=f"bench_{n % 100}",
                    plan_code=PLAN.code,
                    period=Period(start, start + timedelta(days=31)),
                    currency="USD",
                    charges=[line],
                    coupon=None,
                    tax_rules=[],
                    tax_inclusive=False,
                    credit_available=Money.zero("USD"),
                )
                session.add_invoice(finalize(draft, session.next_invoice_sequence(TENANT), NOW))
        stored += size
    elapsed = time.perf_counter() - started
    print(f"setup: {count:,} invoices stored through the ledger in {elapsed:.1f} s ({count / elapsed:,.0f}/s)")


def invoices(channel: grpc.Channel, auth: Any, api: PostgresApiLedger, args: Any) -> None:
    stub = invoice_pb2_grpc.InvoiceServiceStub(channel)  # type: ignore[no-untyped-call]
    ids = [row.id for row in api.invoices(TENANT, None, None, None, 1)]
    first = ids[0]
    rng = random.Random(args.seed)
    last = first + args.invoices - 1

    def get() -> None:
        wanted = rng.randint(first, last)
        got = stub.GetInvoice(invoice_pb2.GetInvoiceRequest(id=str(wanted)), metadata=auth, timeout=10)
        assert got.invoice.id == str(wanted)

    print(f"GetInvoice over {args.invoices:,} invoices (random ids): {timed(get, args.reads)}")
    probe = stub.ListInvoices(invoice_pb2.ListInvoicesRequest(page_size=50), metadata=auth, timeout=10)
    assert len(probe.invoices) == 50
    tokens = []
    for _ in range(args.reads):  # tokens of random pages: walk one page from a random id
        start = rng.randint(first, max(first, last - 60))
        page = api.invoices(TENANT, None, None, start, 1)
        assert page
        tokens.append(_token(page[0].id - 1))
    turn = iter(tokens * 2)

    def listing() -> None:
        request = invoice_pb2.ListInvoicesRequest(page_size=50, page_token=next(turn))
        assert len(stub.ListInvoices(request, metadata=auth, timeout=10).invoices) == 50

    print(f"ListInvoices, pages of 50 at random places: {timed(listing, args.reads, warmup=0)}")

    def of_subscription() -> None:
        request = invoice_pb2.ListInvoicesRequest(subscription_id=f"bench_{rng.randrange(100)}", page_size=50)
        assert stub.ListInvoices(request, metadata=auth, timeout=10).invoices

    print(f"ListInvoices of one subscription (first page of 50): {timed(of_subscription, args.reads)}")


def _token(after: int) -> str:
    return encode_token((after,))


def summaries(channel: grpc.Channel, auth: Any, stores: Stores, sub: str, args: Any) -> None:
    started = time.perf_counter()
    _, last_ms = load_latency_usage(stores, sub, args.events, TENANT)
    loaded = time.perf_counter() - started
    print(f"setup: {args.events:,} events and their 15-minute windows in the store in {loaded:.1f} s")
    expected = stores.usage.client.query(
        f"SELECT sum(value), count() FROM {stores.usage.db}.usage_events FINAL WHERE subscription_id = '{sub}'"
    ).result_rows[0]
    stub = usage_pb2_grpc.UsageServiceStub(channel)  # type: ignore[no-untyped-call]
    end = datetime.fromtimestamp((last_ms + 1) / 1000, UTC)
    for granularity in ("day", ""):
        request = usage_pb2.GetUsageSummaryRequest(
            subscription_id=sub, metric_codes=["api_calls"], granularity=granularity
        )
        request.start_time.FromDatetime(OPEN_START)
        request.end_time.FromDatetime(end)
        answer = stub.GetUsageSummary(request, metadata=auth, timeout=60)
        total = sum(Decimal(a.total_value) for a in answer.aggregations)
        events = sum(a.event_count for a in answer.aggregations)
        assert (total, events) == (expected[0], expected[1]), (total, events, expected)
        what = f"{len(answer.aggregations)} day windows" if granularity else "uncut"
        ask = lambda asked=request: stub.GetUsageSummary(asked, metadata=auth, timeout=60)  # noqa: E731
        measured = timed(ask, args.summary_reads, 3)
        print(f"GetUsageSummary over {args.events:,} events, {what} (= SQL sum {total}): {measured}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="usage events of the summarized subscription")
    parser.add_argument("--invoices", type=int, default=100_000, help="invoices stored before the reads")
    parser.add_argument("--ingest", type=int, default=200_000, help="events sent by IngestUsage (and by the SDK)")
    parser.add_argument("--batch", type=int, default=1000, help="events per IngestUsage call")
    parser.add_argument("--reads", type=int, default=300, help="calls per invoice read measurement")
    parser.add_argument("--summary-reads", type=int, default=50, help="calls per GetUsageSummary measurement")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.events, args.invoices, args.ingest, args.reads, args.summary_reads = 100_000, 2_000, 20_000, 50, 20

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        started = time.perf_counter()
        stores = open_stores(Path(tmp))
        print(
            f"stores: ClickHouse {stores.clickhouse_where}; PostgreSQL {stores.database_url} (opened in "
            f"{time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        try:
            with kafka(Path(tmp) / "kafka") as bootstrap:
                run(stores, bootstrap, args)
        finally:
            stores.close()
            if not os.environ.get("DATABASE_URL"):
                stop_embedded_database(Path(tmp) / "postgres")


def run(stores: Stores, bootstrap: str, args: Any) -> None:
    tag = secrets.token_hex(4)
    api_topic, sdk_topic = f"bench-api-{tag}", f"bench-sdk-{tag}"
    ensure_topics(bootstrap, 6, topics=[api_topic, sdk_topic])
    sub = f"latency_{tag}"
    key = catalog(stores, sub)
    api = PostgresApiLedger(stores.ledger)
    server = ApiServer(
        stores.engine,
        clock=TestClock(NOW),
        usage=StoreUsageReader(stores.usage),
        events=ClickHouseEventLog(stores.usage.client, stores.usage.db),
        recorder=KafkaRecorder(bootstrap, api_topic),
    )
    port = server.start(0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 1 << 21)])
    auth = [("authorization", f"Bearer {key}")]
    try:
        ingest(channel, auth, bootstrap, sdk_topic, sub, args)
        store_invoices(stores, args.invoices)
        invoices(channel, auth, api, args)
        summaries(channel, auth, stores, sub, args)
    finally:
        channel.close()
        server.stop(0)


if __name__ == "__main__":
    main()
