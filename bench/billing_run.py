"""Benchmark: a billing run at scale, from usage in ClickHouse to finalized invoices in PostgreSQL,
and the latency of a current-usage read for a subscription with 10M events in its open period.

The billing run is the product path: ``InvoiceService`` (rating, composition, numbering, outbox)
over ``PostgresLedger``, its usage read from ``ClickHouseUsageStore`` through ``StoreUsageReader``,
stores wired by ``billing.stores.open_stores``. Subscriptions are dealt over ``--tenants`` tenants
and finalized in chunks of ``--batch`` periods of one tenant, each chunk in one ledger batch.
With ``--workers`` N > 1, N finalizer processes each own whole tenants (invoice numbers are
gapless per tenant, and a ledger batch holds its tenant's counter row until it commits, so a
tenant is finalized by one process at a time); this process owns the embedded ClickHouse (chDB
serves one process), reads each chunk's usage in one ``quantities`` call and sends it with the
chunk, as the rating agent sends a RatingResult to the invoice worker; the finalizer's
``prefetch`` and ``close_period`` then answer from it. With ``--workers 1`` everything runs here,
``prefetch`` reading from the store. Afterwards the run is checked in PostgreSQL: one invoice per
subscription, each tenant's numbers exactly 1…n, one ``invoice.finalized`` outbox row per invoice.
It prints invoices/s beside a bulk ``COPY`` of the same rows (the invoices and line items the run
stored, read back) into the same PostgreSQL in the same run, the floor any writer of them pays.

Usage is loaded with SQL straight into the store's tables, in the store's schema (``INSERT …
SELECT … FROM numbers()``): for the billing run, ``--windows`` 15-minute windows per subscription
and meter (each the totals of two events); for the latency read, ``--events`` raw events of one
subscription and their 15-minute windows computed from them in ClickHouse. The read is
``StoreUsageReader.quantities`` (→ ``ClickHouseUsageStore.summed`` for this SUM meter): the exact
``[a, b)`` read a current-usage RPC makes, checked against a plain SQL sum of the raw events.

Usage: python bench/billing_run.py [--subscriptions 100000] [--tenants 4] [--workers 2] [--windows 8]
       [--batch 1000] [--events 10000000] [--reads 200] [--per-invoice-transactions] [--profile FILE]
--profile profiles this process only (with --workers > 1: the usage reads and the dispatch).
DATABASE_URL / CLICKHOUSE_URL use servers instead of the embedded ones (fresh ids per run).
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import multiprocessing
import os
import queue as stdlib_queue
import random
import secrets
import statistics
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import create_engine

from billing.stores import Stores, open_stores
from billing.usage_reader import StoreUsageReader
from invoicing.engine.subscriptions import ClosedPeriod, Subscription, close_due, open_cycle
from invoicing.engine.tax import TaxRule
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.embedded import stop_embedded_database
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import Ledger, UsageRequest
from invoicing.service import InvoiceService
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier
from rating.periods import epoch_ms
from streams.clickhouse.store import EXACT
from streams.operators.intervals import UsageQuery, assemble, plan_read

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


def tenant_of(tag: str, n: int, tenants: int) -> str:
    """Subscription ``n``'s tenant: the subscriptions are dealt round-robin over ``tenants`` tenants."""
    return f"{tag}_t{n % tenants}"


def load_billing_usage(stores: Stores, tag: str, subscriptions: int, windows: int, tenants: int = 1) -> int:
    """``windows`` 15-minute windows per subscription and meter spread over January, each the totals
    of two events (a first one 1 s into the window, a latest one 601 s in), written as version 2."""
    db = stores.usage.db
    per_sub = len(METRICS) * windows
    spacing = (31 * 96) // windows  # buckets between consecutive windows of a series
    names = "[" + ", ".join(f"'{m.code}'" for m in METRICS) + "]"
    stores.usage.client.command(
        f"""
        INSERT INTO {db}.usage_windows
        SELECT concat('{tag}_t', toString(s % {tenants})), concat('{tag}_', leftPad(toString(s), 6, '0')),
               {names}[m + 1], '15m', ws,
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


def load_latency_usage(stores: Stores, subscription_id: str, events: int, tenant: str = "latency") -> tuple[int, int]:
    """``events`` raw api_calls events from the start of February, one every ``step`` ms with value
    1…100, and their 15-minute buckets with the UTC hour, day and month they roll up into,
    aggregated from them in ClickHouse as the window operator writes them (version = distinct
    events, first and latest by (time, key), Σ value × Δms). Returns (step, last event ms)."""
    db, client = stores.usage.db, stores.usage.client
    start_ms = epoch_ms(OPEN_START)
    step = max(1, (25 * 86_400_000) // events)  # 10M events: one per 216 ms over 25 days
    client.command(
        f"""
        INSERT INTO {db}.usage_events
            (tenant_id, subscription_id, metric_code, idempotency_key, event_id, value, recorded_at, metadata,
             unique_value)
        SELECT '{tenant}', '{subscription_id}', 'api_calls', concat('k', toString(number)),
               concat('e', toString(number)), toDecimal128(number % 100 + 1, 12),
               fromUnixTimestamp64Milli(toInt64({start_ms} + number * {step}), 'UTC'), map(), NULL
        FROM numbers({events})
        """
    )
    # evenly spaced events: Σ value × Δms inside a bucket is step × (total − latest value)
    client.command(
        f"""
        INSERT INTO {db}.usage_windows
        SELECT any(tenant_id), subscription_id, metric_code, '15m', ws, ws + toIntervalMinute(15),
               count(), count(), sum(value), max(value),
               max(recorded_at), argMax(idempotency_key, (recorded_at, idempotency_key)),
               argMax(value, (recorded_at, idempotency_key)), NULL,
               min(recorded_at), argMin(idempotency_key, (recorded_at, idempotency_key)),
               argMin(value, (recorded_at, idempotency_key)), NULL,
               toDecimal256(sum(value) - argMax(value, (recorded_at, idempotency_key)), 12) * {step}, [],
               toStartOfHour(ws), toStartOfDay(ws), toStartOfDay(ws) + toIntervalDay(1),
               toStartOfMonth(ws), toStartOfMonth(ws) + toIntervalMonth(1)
        FROM {db}.usage_events
        WHERE subscription_id = '{subscription_id}'
        GROUP BY subscription_id, metric_code, toStartOfInterval(recorded_at, toIntervalMinute(15)) AS ws
        """
    )
    return step, start_ms + (events - 1) * step


# -- billing run ------------------------------------------------------------------------------------


def closing_periods(tag: str, subscriptions: int, tenants: int = 1) -> list[ClosedPeriod]:
    closed = []
    for n in range(subscriptions):
        tenant = tenant_of(tag, n, tenants)
        subscription = Subscription(f"{tag}_{n:06d}", tenant, PLAN.code, PERIOD_START, region_code=REGIONS[n % 3])
        closed.append(close_due(open_cycle(subscription, PLAN))[0])
    return closed


def terms_of(tenant_id: str) -> BillingTerms:
    return BillingTerms(tenant_id, {m.code: m for m in METRICS}, TAX_RULES)


def tenant_chunks(closing: list[ClosedPeriod], batch: int) -> list[list[ClosedPeriod]]:
    """Chunks of at most ``batch`` periods, each of one tenant (one counter row per ledger batch)."""
    by_tenant: dict[str, list[ClosedPeriod]] = {}
    for closed in closing:
        by_tenant.setdefault(closed.subscription.tenant_id, []).append(closed)
    chunks = []
    for periods in by_tenant.values():
        chunks += [periods[first : first + batch] for first in range(0, len(periods), batch)]
    return chunks


def billing_run(
    stores: Stores, chunks: list[list[ClosedPeriod]], per_invoice: bool
) -> tuple[int, float, float, list[float]]:
    """Finalize every period in this process: each chunk's usage read by ``prefetch`` from the
    store, then finalized in one ledger batch. Returns the invoices made, the seconds of the run
    and of its usage reads (and no finalizer's CPU: there is none)."""
    reader = StoreUsageReader(stores.usage)
    services: dict[str, InvoiceService] = {}
    made = 0
    reading = 0.0
    started = time.perf_counter()
    for chunk in chunks:
        tenant = chunk[0].subscription.tenant_id
        service = services.get(tenant) or services.setdefault(
            tenant, InvoiceService(stores.ledger, reader, terms_of(tenant))
        )
        at = chunk[0].period.end + timedelta(hours=1)
        read_started = time.perf_counter()
        service.prefetch(chunk)
        reading += time.perf_counter() - read_started
        with _transaction(stores.ledger, chunk, per_invoice):
            made += sum(1 for closed in chunk if service.close_period(closed, at) is not None)
    return made, time.perf_counter() - started, reading, []


def _transaction(ledger: Ledger, chunk: list[ClosedPeriod], per_invoice: bool) -> AbstractContextManager[None]:
    """The ledger's batch for the chunk (one commit for many invoices, their periods and credit
    balances read ahead in one round trip), unless every invoice is to have its own transaction."""
    if per_invoice:
        return nullcontext()
    return ledger.batch([(closed.subscription.id, closed.period.start) for closed in chunk])


class ShippedUsage:
    """A finalizer process's UsageReader: the quantities the coordinator read from ClickHouse for
    the chunk it sent (as the invoice worker's reader answers from the RatingResult it consumed).
    A request it was not sent is an error, never a zero."""

    def __init__(self) -> None:
        self.known: dict[UsageRequest, Decimal] = {}

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        return [self.known.pop(r) for r in requests]


def usage_requests(chunk: list[ClosedPeriod]) -> list[UsageRequest]:
    """What ``InvoiceService.prefetch`` asks for the chunk (PLAN meters METRICS, in that order)."""
    return [
        UsageRequest(c.subscription.id, m.code, m.aggregation, c.period.start, c.period.end)
        for c in chunk
        for m in METRICS
    ]


def finalizer(
    database_url: str, closing: tuple[str, int, int, int], per_invoice: bool, inbox: Any, outbox: Any
) -> None:
    """A finalizer process: its own PostgreSQL engine and ``InvoiceService`` per tenant. It makes
    the run's chunks of closing periods the way the coordinator does (``closing``: tag,
    subscriptions, tenants, batch) before the clock starts; for each chunk number it receives with
    the chunk's usage, ``prefetch`` and ``close_period`` in one ledger batch, as the in-process run does."""
    try:
        tag, subscriptions, tenants, batch = closing
        chunks = tenant_chunks(closing_periods(tag, subscriptions, tenants), batch)
        engine = create_engine(database_url)
        ledger = PostgresLedger(engine)
        with engine.connect():
            pass  # connected before the clock starts
        reader = ShippedUsage()
        services: dict[str, InvoiceService] = {}
        outbox.put(("ready", 0))
        made, waited = 0, 0.0
        cpu = time.process_time()
        while True:
            wait_started = time.perf_counter()
            item = inbox.get()
            waited += time.perf_counter() - wait_started
            if item is None:
                break
            number, quantities = item
            chunk = chunks[number]
            tenant = chunk[0].subscription.tenant_id
            service = services.get(tenant) or services.setdefault(
                tenant, InvoiceService(ledger, reader, terms_of(tenant))
            )
            at = chunk[0].period.end + timedelta(hours=1)
            reader.known.update(zip(usage_requests(chunk), quantities, strict=True))
            service.prefetch(chunk)
            with _transaction(ledger, chunk, per_invoice):
                made += sum(1 for closed in chunk if service.close_period(closed, at) is not None)
        outbox.put(("done", (made, waited, time.process_time() - cpu)))
        engine.dispose()
    except BaseException:
        outbox.put(("error", traceback.format_exc()))
        raise


def parallel_run(
    stores: Stores, closing: tuple[str, int, int, int], workers: int, per_invoice: bool
) -> tuple[int, float, float, list[float]]:
    """Finalize in ``workers`` processes, each owning whole tenants (tenant i → process i mod
    workers), so no two processes ever wait on one tenant's counter row. This process owns the
    embedded ClickHouse (chDB serves one process): it reads each chunk's usage with one
    ``StoreUsageReader.quantities`` call and sends the chunk with it, while the processes
    finalize earlier chunks; a chunk travels as its number and its quantities in request order.
    Returns the invoices made, the seconds of the run and of its reads, and the CPU seconds each
    finalizer spent from its first chunk on (its start-up is not part of the run)."""
    tag, subscriptions, tenants, batch = closing
    chunks = tenant_chunks(closing_periods(tag, subscriptions, tenants), batch)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    inboxes = [context.Queue(maxsize=2) for _ in range(workers)]
    processes = [
        context.Process(target=finalizer, args=(stores.database_url, closing, per_invoice, inbox, results), daemon=True)
        for inbox in inboxes
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            _expect(results, "ready", processes)
        names = sorted({chunk[0].subscription.tenant_id for chunk in chunks})
        owner = {tenant: n % workers for n, tenant in enumerate(names)}
        reader = StoreUsageReader(stores.usage)
        reading = 0.0
        started, cpu = time.perf_counter(), time.process_time()
        for number in _interleaved(chunks, owner, workers):
            chunk = chunks[number]
            read_started = time.perf_counter()
            quantities = reader.quantities(usage_requests(chunk))
            reading += time.perf_counter() - read_started
            _put(inboxes[owner[chunk[0].subscription.tenant_id]], (number, quantities), processes)
        for inbox in inboxes:
            _put(inbox, None, processes)
        done = [_expect(results, "done", processes) for _ in processes]
        seconds = time.perf_counter() - started
        made = sum(n for n, _, _ in done)
        print(
            f"  finalizers: waited for usage {', '.join(f'{w:.1f}' for _, w, _ in done)} s, "
            f"CPU {', '.join(f'{c:.1f}' for _, _, c in done)} s; this process: reads {reading:.1f} s, "
            f"CPU {time.process_time() - cpu:.1f} s (usage reads in chDB, sending)"
        )
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return made, seconds, reading, [c for _, _, c in done]


def _interleaved(chunks: list[list[ClosedPeriod]], owner: dict[str, int], workers: int) -> Iterator[int]:
    """The chunks' numbers in turns of the processes that own them, so every process has work early."""
    queues: list[list[int]] = [[] for _ in range(workers)]
    for number, chunk in enumerate(chunks):
        queues[owner[chunk[0].subscription.tenant_id]].append(number)
    for turn in itertools.zip_longest(*queues):
        yield from (chunk for chunk in turn if chunk is not None)


def _put(queue: Any, item: Any, processes: list[Any]) -> None:
    while True:
        try:
            queue.put(item, timeout=1)
            return
        except stdlib_queue.Full:
            if any(p.exitcode not in (None, 0) for p in processes):  # 0: finished, its result is queued
                raise RuntimeError("a finalizer process died") from None


def _expect(results: Any, kind: str, processes: list[Any]) -> Any:
    while True:
        try:
            got, value = results.get(timeout=1)
        except stdlib_queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):  # 0: finished, its result is queued
                raise RuntimeError("a finalizer process died") from None
            continue
        if got == "error":
            raise RuntimeError(f"a finalizer process failed:\n{value}")
        assert got == kind, (got, value)
        return value


def postgres_cpu(database_url: str) -> float | None:
    """CPU seconds used so far by the embedded PostgreSQL serving ``database_url`` (its postmaster,
    the backends alive now, and those that ended, through the postmaster's children's time), from
    /proc; None for a server elsewhere or without /proc."""
    socket_dir = unquote(database_url.partition("host=")[2].partition("&")[0])
    if not socket_dir or not Path("/proc").is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    postmaster = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        if command.split(b"\x00")[0].endswith(b"/postgres") and socket_dir.encode() in command:
            postmaster = int(entry.name)
    if postmaster is None:
        return None
    total = sum(int(v) for v in stats[postmaster][11:15])  # utime, stime, cutime, cstime
    total += sum(int(f[11]) + int(f[12]) for f in stats.values() if int(f[1]) == postmaster)
    return total / tick


def cpu_line(invoices: int, here: float, finalizers: list[float], database: float | None) -> str:
    """CPU per invoice, and the rate it allows with nothing else running: all of it shared out
    over the CPUs, but no process faster than the one CPU it can use (Python runs one thread at a
    time; chDB's query threads are counted in this process's time)."""
    per = [("this process", here), ("finalizer processes", sum(finalizers))]
    if database is not None:
        per.append(("PostgreSQL", database))
    total = sum(seconds for _, seconds in per)
    parts = ", ".join(f"{name} {seconds / invoices * 1000:.2f}" for name, seconds in per if seconds)
    cpus = os.cpu_count() or 1
    bounds = [cpus * invoices / total, invoices / here]
    if finalizers:
        bounds.append(invoices / max(finalizers))  # the busiest finalizer (one tenant: only one works)
    return (
        f"  CPU per invoice: {parts} = {total / invoices * 1000:.2f} ms; with nothing else running on "
        f"{cpus} CPUs that allows about {min(bounds):,.0f} invoices/s"
    )


# -- verification -----------------------------------------------------------------------------------

CHECK = """
SELECT i.tenant_id, count(*), count(DISTINCT i.subscription_id), count(DISTINCT i.invoice_number),
       min(split_part(i.invoice_number, '-', 3)::int), max(split_part(i.invoice_number, '-', 3)::int),
       (SELECT last_number FROM invoice_sequences s WHERE s.tenant_id = i.tenant_id),
       (SELECT count(*) FROM outbox o WHERE o.topic = 'invoice.finalized' AND o.key LIKE %(prefix)s
            AND (o.payload ->> 'tenant_id') = i.tenant_id)
FROM invoices i WHERE i.tenant_id LIKE %(prefix)s GROUP BY i.tenant_id ORDER BY 1
"""


def verify(stores: Stores, tag: str, closing: list[ClosedPeriod]) -> int:
    """From PostgreSQL, not from what the run returned: one invoice per subscription, numbers of
    each tenant exactly 1…n (gapless, no duplicate) with the tenant's counter at n, and one
    ``invoice.finalized`` outbox row per invoice. Returns the number of invoices."""
    expected: dict[str, int] = {}
    for closed in closing:
        expected[closed.subscription.tenant_id] = expected.get(closed.subscription.tenant_id, 0) + 1
    with stores.engine.connect() as connection:
        pg: Any = connection.connection.driver_connection
        rows = pg.execute(CHECK, {"prefix": f"{tag}\\_%"}).fetchall()
    found = {
        tenant: (count, subs, numbers, low, high, counter, events)
        for tenant, count, subs, numbers, low, high, counter, events in rows
    }
    assert set(found) == set(expected), (sorted(found), sorted(expected))
    for tenant, n in expected.items():
        assert found[tenant] == (n, n, n, 1, n, n, n), (tenant, n, found[tenant])
    return sum(expected.values())


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


def copy_baseline(stores: Stores, tag: str) -> tuple[float, int, int]:
    """Seconds to COPY the rows the run stored (its invoices and their line items, read back
    beforehand) into tables like theirs, and commit; and the invoice and line item counts."""
    with stores.engine.connect() as connection:
        pg: Any = connection.connection.driver_connection
        prefix = {"prefix": f"{tag}\\_%"}
        heads = pg.execute(
            f"SELECT {INVOICE_COLUMNS.replace('metadata', 'metadata::text')} FROM invoices "
            "WHERE tenant_id LIKE %(prefix)s",
            prefix,
        ).fetchall()
        columns = ", ".join(f"l.{c.strip()}" for c in LINE_COLUMNS.split(",")).replace("metadata", "metadata::text")
        lines = pg.execute(
            f"SELECT {columns} FROM invoice_line_items l JOIN invoices i ON i.id = l.invoice_id "
            "WHERE i.tenant_id LIKE %(prefix)s",
            prefix,
        ).fetchall()
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
        return time.perf_counter() - started, len(heads), len(lines)


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
    rows = load_billing_usage(stores, tag, args.subscriptions, args.windows, args.tenants)
    closing = closing_periods(tag, args.subscriptions, args.tenants)
    chunks = tenant_chunks(closing, args.batch)
    print(
        f"setup: {rows:,} usage windows ({args.subscriptions:,} subscriptions of {args.tenants} tenants × "
        f"{len(METRICS)} meters × {args.windows}) and {len(closing):,} closing periods in "
        f"{time.perf_counter() - started:.1f} s"
    )
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    cpu_here = time.process_time()
    cpu_database = postgres_cpu(stores.database_url)
    if args.workers > 1:
        spec = (tag, args.subscriptions, args.tenants, args.batch)
        made, seconds, reading, cpu_finalizers = parallel_run(stores, spec, args.workers, args.per_invoice_transactions)
    else:
        made, seconds, reading, cpu_finalizers = billing_run(stores, chunks, args.per_invoice_transactions)
    cpu_here = time.process_time() - cpu_here
    database_after = postgres_cpu(stores.database_url)
    if cpu_database is not None and database_after is not None:
        cpu_database = database_after - cpu_database
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    invoices = verify(stores, tag, closing)
    assert made == invoices == len(closing), (made, invoices, len(closing))
    rate = invoices / seconds
    mode = "one transaction per invoice" if args.per_invoice_transactions else "ledger batches"
    where = f"{args.workers} finalizer processes" if args.workers > 1 else "one process"
    print(
        f"billing run: {invoices:,} invoices in {seconds:.1f} s = {rate:,.0f} invoices/s "
        f"({where}, batches of {args.batch}, {mode}; usage reads {reading:.1f} s of it) (aim: 2,000 invoices/s); "
        f"verified in PostgreSQL: one invoice per subscription, numbers 1…n of each tenant without gap or "
        f"duplicate, one invoice.finalized outbox row each"
    )
    print(cpu_line(invoices, cpu_here, cpu_finalizers, cpu_database))
    copy_s, heads, line_count = copy_baseline(stores, tag)
    copy_rate = heads / copy_s
    print(
        f"COPY of the same rows ({heads:,} invoices + {line_count:,} line items) into the same "
        f"PostgreSQL: {copy_s:.2f} s = {copy_rate:,.0f} invoices/s; billing run / COPY = {rate / copy_rate:.3f}"
    )


def split_read(stores: Stores, subscription_id: str, start_ms: int, end_ms: int, repeat: int = 30) -> None:
    """The parts of one read, each timed alone: the one query ``summed`` makes (what a SUM meter's
    read is), and for comparison the two queries ``totals`` makes for the other aggregations (through
    the store's own methods) and its merge in Python, beside a trivial query for the client's floor."""
    store = stores.usage
    plan = plan_read(start_ms, end_ms)
    query = [UsageQuery(subscription_id, METRICS[0].code, start_ms, end_ms)]
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
        "summed (the SUM read, one query)": lambda: store.summed(query),
        "totals' bucket query": lambda: store._bucket_totals(bucket_span),
        "totals' edge query": lambda: store._edge_points(edge_span),
        "totals' merge in Python": merge,
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
    parser.add_argument("--workers", type=int, default=2, help="finalizer processes (1: all in this process)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the subscriptions are dealt over")
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
