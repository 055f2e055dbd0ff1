"""The PostgreSQL ledger's hot path: its statements as plain SQL on the psycopg connection under the
SQLAlchemy transaction (no statement compilation per call; psycopg prepares them once they repeat),
and the writes a finalization defers until the transaction needs them.

A session defers what nothing in it reads back before commit: billed usage and outbox rows, and,
inside a :meth:`PostgresLedger.batch`, invoices with their line items and the tenants' invoice
counters. Deferred rows go out in one pipelined round trip (``flush``), before the transaction
commits and before any read that could see them, so a session reads its own writes as before.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import Connection as PgConnection

from invoicing.engine.model import Invoice
from invoicing.ports import BilledUsage, OutboxMessage
from rating.catalog import Plan
from rating.errors import InvalidValue

CREDIT_LOCK = 0x0C4ED  # first key of the two-key advisory lock on a subscription's credit balance

FIND_INVOICE = "SELECT id FROM invoices WHERE subscription_id = %s AND billing_period_start = %s"
INVOICE_EXISTS = "SELECT 1 FROM invoices WHERE subscription_id = %s AND billing_period_start = %s"
NEXT_NUMBER = (
    "INSERT INTO invoice_sequences (tenant_id, last_number) VALUES (%s, 1) "
    "ON CONFLICT (tenant_id) DO UPDATE SET last_number = invoice_sequences.last_number + 1 RETURNING last_number"
)
# the counter row, locked until the transaction ends, without taking a number (a batch counts locally)
LOCK_NUMBER = (
    "INSERT INTO invoice_sequences (tenant_id, last_number) VALUES (%s, 0) "
    "ON CONFLICT (tenant_id) DO UPDATE SET last_number = invoice_sequences.last_number RETURNING last_number"
)
SET_NUMBER = "UPDATE invoice_sequences SET last_number = %s WHERE tenant_id = %s"
LOCK_CREDIT = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
BALANCE = (
    "SELECT (SELECT coalesce(sum(amount), 0) FROM credit_notes "
    "        WHERE subscription_id = %(sub)s AND currency_code = %(cur)s AND type = 'BALANCE')"
    "     - (SELECT coalesce(sum(amount), 0) FROM credit_usage"
    "        WHERE subscription_id = %(sub)s AND currency_code = %(cur)s)"
)
PLAN_VERSION = "SELECT snapshot FROM plans WHERE tenant_id = %s AND code = %s AND version = %s"
# The invoice and its line items in one statement. A second invoice of the period inserts nothing
# and returns no row (the caller raises), and the transaction stays usable without a savepoint.
INSERT_INVOICE = """
WITH invoice AS (
    INSERT INTO invoices (tenant_id, subscription_id, billing_period_start, billing_period_end, currency_code, status,
                          invoice_number, issued_at, plan_code, subtotal, discount_total, tax_total, total,
                          credits_applied, amount_paid, amount_due, metadata)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json)
    ON CONFLICT ON CONSTRAINT invoices_one_per_period DO NOTHING
    RETURNING id
), lines AS (
    INSERT INTO invoice_line_items (invoice_id, position, type, description, amount, currency_code, quantity,
                                    unit_price, metric_code, metadata)
    SELECT invoice.id, line.position, line.type, line.description, line.amount, line.currency_code, line.quantity,
           line.unit_price, line.metric_code, line.metadata::json
    FROM invoice CROSS JOIN unnest(%s::int[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::numeric[],
                                   %s::numeric[], %s::text[], %s::text[])
        AS line(position, type, description, amount, currency_code, quantity, unit_price, metric_code, metadata)
)
SELECT id FROM invoice
"""
UPSERT_BILLED = """
INSERT INTO billed_usage (subscription_id, period_start, metric_code, period_end, quantity, amount, currency_code,
                          plan_code, plan_version, share_numerator, share_denominator, allow_overage)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (subscription_id, period_start, metric_code) DO UPDATE SET
    period_end = excluded.period_end, quantity = excluded.quantity, amount = excluded.amount,
    currency_code = excluded.currency_code, plan_code = excluded.plan_code, plan_version = excluded.plan_version,
    share_numerator = excluded.share_numerator, share_denominator = excluded.share_denominator,
    allow_overage = excluded.allow_overage
"""
INSERT_OUTBOX = "INSERT INTO outbox (topic, key, payload) VALUES (%s, %s, %s::jsonb)"


def invoice_parameters(invoice: Invoice) -> tuple[Any, ...]:
    lines = invoice.line_items
    return (
        invoice.tenant_id,
        invoice.subscription_id,
        invoice.period.start,
        invoice.period.end,
        invoice.currency_code,
        str(invoice.status),
        invoice.invoice_number,
        invoice.issued_at,
        invoice.plan_code,
        invoice.subtotal.amount,
        invoice.discount_total.amount,
        invoice.tax_total.amount,
        invoice.total.amount,
        invoice.credits_applied.amount,
        invoice.amount_paid.amount,
        invoice.amount_due.amount,
        json.dumps(dict(invoice.metadata)),
        list(range(len(lines))),
        [str(line.type) for line in lines],
        [line.description for line in lines],
        [line.amount.amount for line in lines],
        [line.amount.currency for line in lines],
        [None if line.quantity is None else str(line.quantity) for line in lines],
        [None if line.unit_price is None else str(line.unit_price) for line in lines],
        [line.metric_code for line in lines],
        [json.dumps(dict(line.metadata)) for line in lines],
    )


def billed_parameters(usage: BilledUsage) -> tuple[Any, ...]:
    return (
        usage.subscription_id,
        usage.period_start,
        usage.metric_code,
        usage.period_end,
        usage.quantity,
        usage.amount.amount,
        usage.amount.currency,
        usage.plan_code,
        usage.plan_version,
        usage.share.numerator,
        usage.share.denominator,
        usage.allow_overage,
    )


def period_taken(invoice: Invoice) -> InvalidValue:
    return InvalidValue("billing_period_start", f"subscription {invoice.subscription_id} has that period's invoice")


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a session began in a batch's deferred writes, to give its own back if it fails."""

    invoices: int
    billed: int
    outbox: int
    numbers: dict[str, int]
    written: dict[str, int]


@dataclass
class Writes:
    """Deferred writes of one transaction, flushed in order (invoices, billed usage, outbox,
    counters) in one pipelined round trip."""

    invoices: list[Invoice] = field(default_factory=list)
    billed: list[BilledUsage] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    pending_invoices: dict[tuple[str, datetime], Invoice] = field(default_factory=dict)
    touched: Counter[str] = field(default_factory=Counter)  # subscriptions with deferred rows
    numbers: dict[str, int] = field(default_factory=dict)  # tenant → last number taken (batches)
    written: dict[str, int] = field(default_factory=dict)  # tenant → last number in the counter row

    def add_invoice(self, invoice: Invoice) -> None:
        self.invoices.append(invoice)
        self.pending_invoices[(invoice.subscription_id, invoice.period.start)] = invoice
        self.touched[invoice.subscription_id] += 1

    def add_billed(self, usage: BilledUsage) -> None:
        self.billed.append(usage)
        self.touched[usage.subscription_id] += 1

    def empty(self) -> bool:
        return not (self.invoices or self.billed or self.outbox) and self.numbers == self.written

    def mark(self) -> Mark:
        return Mark(len(self.invoices), len(self.billed), len(self.outbox), dict(self.numbers), dict(self.written))

    def restore(self, mark: Mark) -> None:
        """Forget what was deferred after ``mark``."""
        for invoice in self.invoices[mark.invoices :]:
            del self.pending_invoices[(invoice.subscription_id, invoice.period.start)]
        del self.invoices[mark.invoices :], self.billed[mark.billed :], self.outbox[mark.outbox :]
        self.touched = Counter(i.subscription_id for i in self.invoices)
        self.touched.update(b.subscription_id for b in self.billed)
        self.numbers, self.written = dict(mark.numbers), dict(mark.written)

    def flush(self, connection: PgConnection[Any], upto: Mark | None = None) -> None:
        """Write what was deferred (before ``upto`` only, when given) and forget it. Raises
        InvalidValue if an invoice's period was invoiced meanwhile (by another transaction): its
        other rows were sent too, so the caller must roll the transaction back."""
        invoices = self.invoices if upto is None else self.invoices[: upto.invoices]
        billed = self.billed if upto is None else self.billed[: upto.billed]
        outbox = self.outbox if upto is None else self.outbox[: upto.outbox]
        numbers = self.numbers if upto is None else upto.numbers
        counters = [(n, tenant) for tenant, n in numbers.items() if self.written.get(tenant) != n]
        if not (invoices or billed or outbox or counters):
            return
        conflict = None
        with connection.pipeline(), connection.cursor() as cursor:
            if invoices:
                cursor.executemany(INSERT_INVOICE, [invoice_parameters(i) for i in invoices], returning=True)
                for invoice in invoices:
                    if cursor.fetchone() is None and conflict is None:
                        conflict = invoice
                    cursor.nextset()
            if billed:
                cursor.executemany(UPSERT_BILLED, [billed_parameters(b) for b in billed])
            if outbox:
                cursor.executemany(INSERT_OUTBOX, [(m.topic, m.key, json.dumps(m.payload)) for m in outbox])
            if counters:
                cursor.executemany(SET_NUMBER, counters)
        for invoice in invoices:
            del self.pending_invoices[(invoice.subscription_id, invoice.period.start)]
        del self.invoices[: len(invoices)], self.billed[: len(billed)], self.outbox[: len(outbox)]
        self.touched = Counter(i.subscription_id for i in self.invoices)
        self.touched.update(b.subscription_id for b in self.billed)
        self.written.update(numbers)
        if conflict is not None:
            raise period_taken(conflict)


@dataclass
class Batch:
    """One transaction shared by the sessions opened inside :meth:`PostgresLedger.batch`."""

    connection: Any  # the SQLAlchemy Connection
    writes: Writes = field(default_factory=Writes)
    plans: dict[tuple[str, str, int], Plan] = field(default_factory=dict)
    absent: set[tuple[str, datetime]] = field(default_factory=set)  # periods found without an invoice
    failed: BaseException | None = None
