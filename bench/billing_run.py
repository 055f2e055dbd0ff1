"""Benchmark: a billing run at scale, from usage in ClickHouse to finalized invoices in PostgreSQL,
and the latency of a current-usage read for a subscription with 10M events in its open period.

The billing run is the product path: ``InvoiceService`` (rating, composition, numbering, outbox)
over ``PostgresLedger`` and ``ClickHouseUsageStore`` wired by ``billing.stores.open_stores`` as
``billing demo`` and ``simulate --stores embedded`` wire them, with ``prefetch`` reading the
usage of each batch of closing periods in one store call, as the simulation runner does for the
periods closing at one instant. It prints invoices/s beside a bulk ``COPY`` of the same rows
(invoices and their line items) into the same PostgreSQL in the same run, the floor any writer
of those rows pays.

Usage is loaded with SQL straight into the store's tables, in the store's schema (``INSERT …
SELECT … FROM numbers()``): for the billing run, ``--windows`` 15-minute windows per subscription
and meter (each the totals of two events); for the latency read, ``--events`` raw events of one
subscription and their 15-minute windows computed from them in ClickHouse. The read is
``StoreUsageReader.quantities`` → ``ClickHouseUsageStore.totals``: the exact ``[a, b)`` read a
current-usage RPC makes, checked against a plain SQL sum of the raw events.

Usage: python bench/billing_run.py [--subscriptions 100000] [--windows 8] [--batch 1000]
       [--events 10000000] [--reads 200] [--per-invoice-transactions] [--profile FILE]
DATABASE_URL / CLICKHOUSE_URL use servers instead of the embedded ones (fresh ids per run).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from billing.stores import Stores, open_stores
from billing.usage_reader import StoreUsageReader
from invoicing.engine.model import Invoice
from invoicing.engine.subscriptions import ClosedPeriod, Subscription, close_due, open_cycle
from invoicing.engine.tax import TaxRule
from invoicing.ledger.embedded import stop_embedded_database
from invoicing.ports import UsageRequest
from invoicing.service import BillingTerms, InvoiceService
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier
from rating.periods import epoch_ms
from streams.clickhouse.store import EXACT
from streams.operators.intervals import assemble, plan_read

PERIOD_START = datetime(2026, 1, 1, tzinfo=UTC)  # the billed period: January 2026
OPEN_START = datetime(2026, 2, 1, tzinfo=UTC)  # the latency subscription's open period: February 2026
BUCKET_MS = 900_000
METRICS = (
    Metric("api_calls", MetricType.COUNTER, Aggregation.SUM, "calls"),
    Metric("workflow_runs", MetricType.COUNTER, Aggregation.COUNT, "runs"),
    Metric("storage_gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM, "GB-hours"),
)
PLAN = Plan(
    "bench-usd",
    "USD",
    Decimal("49.00"),
    meters=(
        PlanMeter(
            "api_calls",
            PricingModel.TIERED,
            included_units=Decimal(100),
            tiers=(Tier(Decimal(1000), Decimal("0.0004")), Tier(None, Decimal("0.0002"))),
        ),
        PlanMeter("workflow_runs", PricingModel.PACKAGE, Decimal("2.50"), package_size=Decimal(3)),
        PlanMeter("storage_gb", PricingModel.PER_UNIT, Decimal("0.00014")),
    ),
    name="Bench",
)
TAX_RULES = (TaxRule("ID", "PPN", Decimal(11)), TaxRule("EU-DE", "VAT", Decimal(19)))
REGIONS = (None, "ID", "EU-DE")


def _ms_literal(instant: datetime) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({epoch_ms(instant)}), 'UTC')"


# -- usage ------------------------------------------------------------------------------------------


def load_billing_usage(stores: Stores, tag: str, subscriptions: int, windows: int) -> int:
    """``windows`` 15-minute windows per subscription and meter spread over January, each the totals
    of two events (a first one 1 s into the window, a latest one 601 s in), written as version 2."""
    db = stores.usage.db
    per_sub = len(METRICS) * windows
    spacing = (31 * 96) // windows  # buckets between consecutive windows of a series
    names = "[" + ", ".join(f"'{m.code}'" for m in METRICS) + "]"
    stores.usage.client.command(
        f"""
        INSERT INTO {db}.usage_windows
        SELECT '{tag}', concat('{tag}_', leftPad(toString(s), 6, '0')), {names}[m + 1], '15m', ws,
               ws + toIntervalMinute(15), 2, 2, a + b, greatest(a, b),
               ws + toIntervalSecond(601), concat('l', toString(number)), b, NULL,
               ws + toIntervalSecond(1), concat('f', toString(number)), a, NULL,
               toDecimal256(a, 12) * 600000, []
        FROM (
            SELECT number, intDiv(number, {per_sub}) AS s, intDiv(number % {per_sub}, {windows}) AS m,
                   number % {windows} AS w,
                   addMilliseconds({_ms_literal(PERIOD_START)}, toInt64(w * {spacing} * {BUCKET_MS})) AS ws,
                   toDecimal128((s * 7 + w * 3 + m) % 400 + 1, 12) AS a,
                   toDecimal128((s * 11 + w) % 97 + 1, 12) AS b
            FROM numbers({subscriptions * per_sub})
        )
        """
    )
    return subscriptions * per_sub


def load_latency_usage(stores: Stores, subscription_id: str, events: int) -> tuple[int, int]:
    """``events`` raw api_calls events from the start of February, one every ``step`` ms with value
    1…100, and their 15-minute windows aggregated from them in ClickHouse (as the window operator
    would write them: version = distinct events, first/latest by (time, key), Σ value × Δms).
    Returns (step, last event ms)."""
    db = stores.usage.db
    start_ms = epoch_ms(OPEN_START)
    step = max(1, (25 * 86_400_000) // events)  # 10M events: one per 216 ms over 25 days
    client = stores.usage.client
    client.command(
        f"""
        INSERT INTO {db}.usage_events
            (tenant_id, subscription_id, metric_code, idempotency_key, event_id, value, recorded_at, metadata,
             unique_value)
        SELECT 'latency', '{subscription_id}', 'api_calls', concat('k', toString(number)),
               concat('e', toString(number)), toDecimal128(number % 100 + 1, 12),
               fromUnixTimestamp64Milli(toInt64({start_ms} + number * {step}), 'UTC'), map(), NULL
        FROM numbers({events})
        """
    )
    # tw_integral: events are evenly spaced, so Σ value × Δms inside a window is step × (total − latest value)
    client.command(
        f"""
        INSERT INTO {db}.usage_windows
        SELECT any(tenant_id), subscription_id, metric_code, '15m', ws, ws + toIntervalMinute(15),
               count(), count(), sum(value), max(value),
               max(recorded_at), argMax(idempotency_key, (recorded_at, idempotency_key)),
               argMax(value, (recorded_at, idempotency_key)), NULL,
               min(recorded_at), argMin(idempotency_key, (recorded_at, idempotency_key)),
               argMin(value, (recorded_at, idempotency_key)), NULL,
               toDecimal256(sum(value) - argMax(value, (recorded_at, idempotency_key)), 12) * {step}, []
        FROM {db}.usage_events
        WHERE subscription_id = '{subscription_id}'
        GROUP BY subscription_id, metric_code, toStartOfInterval(recorded_at, toIntervalMinute(15)) AS ws
        """
    )
    return step, start_ms + (events - 1) * step


# -- billing run ------------------------------------------------------------------------------------


def closing_periods(tag: str, subscriptions: int) -> list[ClosedPeriod]:
    closed = []
    for n in range(subscriptions):
        subscription = Subscription(f"{tag}_{n:06d}", tag, PLAN.code, PERIOD_START, region_code=REGIONS[n % 3])
        closed.append(close_due(open_cycle(subscription, PLAN))[0])
    return closed


def billing_run(
    stores: Stores, service: InvoiceService, closing: list[ClosedPeriod], batch: int, per_invoice: bool
) -> tuple[list[Invoice], float, float]:
    """Finalize every period; returns the invoices, the seconds of the run and of its usage reads."""
    at = closing[0].period.end + timedelta(hours=1)
    invoices: list[Invoice] = []
    reading = 0.0
    started = time.perf_counter()
    for first in range(0, len(closing), batch):
        chunk = closing[first : first + batch]
        read_started = time.perf_counter()
        service.prefetch(chunk)
        reading += time.perf_counter() - read_started
        with _transaction(stores, chunk, per_invoice):
            invoices.extend(service.close_period(closed, at) for closed in chunk)
    return invoices, time.perf_counter() - started, reading


def _transaction(stores: Stores, chunk: list[ClosedPeriod], per_invoice: bool) -> AbstractContextManager[Any]:
    """The ledger's batch for the chunk (one commit for many invoices, their periods and credit
    balances read ahead in one round trip), when it has one."""
    batch = getattr(stores.ledger, "batch", None)
    if per_invoice or batch is None:
        return nullcontext()
    periods = [(closed.subscription.id, closed.period.start) for closed in chunk]
    return batch(periods)  # type: ignore[no-any-return]


# -- COPY baseline ----------------------------------------------------------------------------------

INVOICE_COLUMNS = (
    "id, tenant_id, subscription_id, billing_period_start, billing_period_end, currency_code, status, "
    "invoice_number, issued_at, plan_code, subtotal, discount_total, tax_total, total, credits_applied, "
    "amount_paid, amount_due, metadata"
)
LINE_COLUMNS = (
    "invoice_id, position, type, description, amount, currency_code, quantity, unit_price, metric_code, metadata"
)


@contextmanager
def copy_tables(stores: Stores) -> Iterator[Any]:
    """Tables shaped like invoices and invoice_line_items (same columns, keys and indexes), dropped after."""
    raw = stores.engine.raw_connection()
    connection: Any = raw.driver_connection  # psycopg
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_copy_invoices (LIKE invoices INCLUDING ALL)")
            cursor.execute("CREATE TABLE bench_copy_line_items (LIKE invoice_line_items INCLUDING ALL)")
        connection.commit()
        yield connection
    finally:
        connection.rollback()
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_copy_invoices, bench_copy_line_items")
        connection.commit()
        raw.close()


def copy_rows(invoices: list[Invoice]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows ``PostgresLedgerSession.add_invoice`` writes for ``invoices``."""
    heads, lines = [], []
    for n, i in enumerate(invoices, 1):
        heads.append(
            (
                n,
                i.tenant_id,
                i.subscription_id,
                i.period.start,
                i.period.end,
                i.currency_code,
                str(i.status),
                i.invoice_number,
                i.issued_at,
                i.plan_code,
                i.subtotal.amount,
                i.discount_total.amount,
                i.tax_total.amount,
                i.total.amount,
                i.credits_applied.amount,
                i.amount_paid.amount,
                i.amount_due.amount,
                json.dumps(dict(i.metadata)),
            )
        )
        for position, line in enumerate(i.line_items):
            lines.append(
                (
                    n,
                    position,
                    str(line.type),
                    line.description,
                    line.amount.amount,
                    line.amount.currency,
                    line.quantity,
                    line.unit_price,
                    line.metric_code,
                    json.dumps(dict(line.metadata)),
                )
            )
    return heads, lines


def copy_baseline(stores: Stores, invoices: list[Invoice]) -> tuple[float, int]:
    """Seconds to COPY the invoices' rows (built beforehand) and commit; and the line item count."""
    heads, lines = copy_rows(invoices)
    with copy_tables(stores) as connection:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY bench_copy_invoices ({INVOICE_COLUMNS}) FROM STDIN") as copy:
                for row in heads:
                    copy.write_row(row)
            with cursor.copy(f"COPY bench_copy_line_items ({LINE_COLUMNS}) FROM STDIN") as copy:
                for row in lines:
                    copy.write_row(row)
        connection.commit()
        return time.perf_counter() - started, len(lines)


# -- current-usage latency --------------------------------------------------------------------------


def latency(stores: Stores, events: int, reads: int, seed: int) -> None:
    subscription_id = f"latency_{secrets.token_hex(4)}"
    started = time.perf_counter()
    step, last_ms = load_latency_usage(stores, subscription_id, events)
    print(f"latency setup: {events:,} events and their 15-minute windows in {time.perf_counter() - started:.1f} s")
    reader = StoreUsageReader(stores.usage)
    rng = random.Random(seed)
    metric = METRICS[0]
    # b just after the last event: every event is in [a, b), and the right edge is the whole last
    # bucket of raw events (the heaviest edge at this rate); the middle is whole windows
    bounds = [last_ms + 1 + rng.randrange(max(1, step - 1)) for _ in range(reads + 5)]
    seconds = []
    quantity = Decimal(0)
    for n, b_ms in enumerate(bounds):
        b = datetime.fromtimestamp(b_ms / 1000, UTC).replace(microsecond=(b_ms % 1000) * 1000)
        request = UsageRequest(subscription_id, metric.code, metric.aggregation, OPEN_START, b)
        read_started = time.perf_counter()
        (quantity,) = reader.quantities([request])
        if n >= 5:  # the first reads warm the caches
            seconds.append(time.perf_counter() - read_started)
    db = stores.usage.db
    expected = stores.usage.client.query(
        f"SELECT sum(value), count() FROM {db}.usage_events FINAL WHERE subscription_id = '{subscription_id}'"
    ).result_rows[0]
    assert quantity == expected[0] and expected[1] == events, (quantity, expected)
    edge = (last_ms - (last_ms - last_ms % BUCKET_MS)) // step + 1
    ms = sorted(s * 1000 for s in seconds)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"current usage of one subscription with {events:,} events in its open period "
        f"({(last_ms - epoch_ms(OPEN_START)) // BUCKET_MS + 1:,} windows, {edge:,} raw edge events per read), "
        f"{len(ms)} reads: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (aim: p99 < 50 ms); "
        f"quantity {quantity} = SQL sum of the raw events"
    )
    split_read(stores, subscription_id, epoch_ms(OPEN_START), last_ms + 1)


def run_billing(stores: Stores, tag: str, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    rows = load_billing_usage(stores, tag, args.subscriptions, args.windows)
    closing = closing_periods(tag, args.subscriptions)
    print(
        f"setup: {rows:,} usage windows ({args.subscriptions:,} subscriptions × {len(METRICS)} meters × "
        f"{args.windows}) and {len(closing):,} closing periods in {time.perf_counter() - started:.1f} s"
    )
    terms = BillingTerms(tag, {m.code: m for m in METRICS}, TAX_RULES)
    service = InvoiceService(stores.ledger, StoreUsageReader(stores.usage), terms)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    invoices, seconds, reading = billing_run(stores, service, closing, args.batch, args.per_invoice_transactions)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    assert len({i.invoice_number for i in invoices}) == len(invoices) == len(closing)
    rate = len(invoices) / seconds
    batched = not args.per_invoice_transactions and hasattr(stores.ledger, "batch")
    mode = "ledger batches" if batched else "one transaction per invoice"
    print(
        f"billing run: {len(invoices):,} invoices in {seconds:.1f} s = {rate:,.0f} invoices/s "
        f"(batches of {args.batch}, {mode}; usage reads {reading:.1f} s of it) (aim: 2,000 invoices/s)"
    )
    copy_s, line_count = copy_baseline(stores, invoices)
    copy_rate = len(invoices) / copy_s
    print(
        f"COPY of the same rows ({len(invoices):,} invoices + {line_count:,} line items) into the same "
        f"PostgreSQL: {copy_s:.2f} s = {copy_rate:,.0f} invoices/s; billing run / COPY = {rate / copy_rate:.3f}"
    )


def split_read(stores: Stores, subscription_id: str, start_ms: int, end_ms: int, repeat: int = 30) -> None:
    """The parts of one read, each timed alone: the two queries ``totals`` makes (through the
    store's own methods) and the merge in Python, beside a trivial query for the client's floor."""
    store = stores.usage
    plan = plan_read(start_ms, end_ms)
    bucket_span = [(0, subscription_id, METRICS[0].code, *plan.buckets)]
    edge_span = [(1, subscription_id, METRICS[0].code, *plan.right)]
    buckets = store._bucket_totals(bucket_span)
    edges = store._edge_points(edge_span)

    def merge() -> None:
        with localcontext(EXACT):
            assemble((), [buckets[0]], edges.get(1, ()))

    def p50(action: Any) -> float:
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            action()
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds) * 1000

    parts = {
        "bucket query": lambda: store._bucket_totals(bucket_span),
        "edge query": lambda: store._edge_points(edge_span),
        "merge in Python": merge,
        "SELECT 1 (client floor)": lambda: store.client.query("SELECT 1"),
    }
    print("  read split, p50 of " + str(repeat) + ": " + ", ".join(f"{k} {p50(v):.1f} ms" for k, v in parts.items()))


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--windows", type=int, default=8, help="15-minute windows per subscription and meter")
    parser.add_argument("--batch", type=int, default=1000, help="periods per prefetch (and per ledger batch)")
    parser.add_argument("--events", type=int, default=10_000_000, help="events of the latency subscription")
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--per-invoice-transactions", action="store_true", help="one commit per invoice")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-billing", action="store_true")
    parser.add_argument("--profile", help="write a cProfile of the billing run here")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    tag = f"b{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as tmp:
        started = time.perf_counter()
        stores = open_stores(Path(tmp))
        print(
            f"stores: ClickHouse {stores.clickhouse_where}; PostgreSQL {stores.database_url} "
            f"(opened and migrated in {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs)"
        )
        try:
            if not args.skip_billing:
                run_billing(stores, tag, args)
            if not args.skip_latency:
                latency(stores, args.events, args.reads, args.seed)
        finally:
            stores.close()
            if not os.environ.get("DATABASE_URL"):
                stop_embedded_database(Path(tmp) / "postgres")


if __name__ == "__main__":
    main()
