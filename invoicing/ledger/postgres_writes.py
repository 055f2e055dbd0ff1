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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import Connection as PgConnection

from invoicing.engine.model import Invoice
from invoicing.ports import BilledUsage, OutboxMessage
from rating.catalog import Plan
from rating.errors import InvalidValue

PLAN_LOCK = 0x0B0C6  # first key of the per-tenant plan lock; the second is the tenant's hash
CREDIT_LOCK = 0x0C4ED  # first key of the two-key advisory lock on a subscription's credit balance

# The period's invoice and, in the same round trip, the subscription's credit balances as of now,
# unlocked (see PostgresLedgerSession.credit_balance for when that is enough)
FIND_INVOICE = """
SELECT (SELECT id FROM invoices WHERE subscription_id = %(sub)s AND billing_period_start = %(start)s),
       (SELECT json_object_agg(currency_code, total) FROM (
            SELECT currency_code, sum(amount) AS total FROM credit_notes
            WHERE subscription_id = %(sub)s AND type = 'BALANCE' GROUP BY currency_code) AS notes),
       (SELECT json_object_agg(currency_code, total) FROM (
            SELECT currency_code, sum(amount) AS total FROM credit_usage
            WHERE subscription_id = %(sub)s GROUP BY currency_code) AS used)
"""
READ_AHEAD_ABSENT = """
SELECT k.n FROM unnest(%s::text[], %s::timestamptz[]) WITH ORDINALITY AS k(sub, start, n)
WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = k.sub AND i.billing_period_start = k.start)
"""
READ_AHEAD_NOTES = (
    "SELECT subscription_id, currency_code, sum(amount) FROM credit_notes "
    "WHERE subscription_id = ANY(%s) AND type = 'BALANCE' GROUP BY 1, 2"
)
READ_AHEAD_USED = (
    "SELECT subscription_id, currency_code, sum(amount) FROM credit_usage WHERE subscription_id = ANY(%s) GROUP BY 1, 2"
)
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
# Rows travel as one JSON array per statement (one parameter, serialized by the C json module)
# and are unpacked by json_to_recordset: instants as ISO 8601 text, quantities as decimal text.
INVOICE_RECORD = (
    "n int, tenant_id text, subscription_id text, billing_period_start timestamptz, billing_period_end timestamptz, "
    "currency_code text, status text, invoice_number text, issued_at timestamptz, plan_code text, subtotal bigint, "
    "discount_total bigint, tax_total bigint, total bigint, credits_applied bigint, amount_paid bigint, "
    "amount_due bigint, metadata json, lines json"
)
LINE_RECORD = (
    "position int, type text, description text, amount bigint, currency_code text, quantity numeric, "
    "unit_price numeric, metric_code text, metadata json"
)
# Invoices and their line items in one statement, ids in the order given. A period invoiced
# already inserts nothing (it is missing from what the statement returns), and the transaction
# stays usable without a savepoint.
INSERT_INVOICES = f"""
WITH given AS (
    SELECT * FROM json_to_recordset(%s::json) AS r({INVOICE_RECORD})
), invoice AS (
    INSERT INTO invoices (tenant_id, subscription_id, billing_period_start, billing_period_end, currency_code, status,
                          invoice_number, issued_at, plan_code, subtotal, discount_total, tax_total, total,
                          credits_applied, amount_paid, amount_due, metadata)
    SELECT tenant_id, subscription_id, billing_period_start, billing_period_end, currency_code, status,
           invoice_number, issued_at, plan_code, subtotal, discount_total, tax_total, total,
           credits_applied, amount_paid, amount_due, metadata
    FROM given ORDER BY n
    ON CONFLICT ON CONSTRAINT invoices_one_per_period DO NOTHING
    RETURNING id, subscription_id, billing_period_start
), line AS (
    INSERT INTO invoice_line_items (invoice_id, position, type, description, amount, currency_code, quantity,
                                    unit_price, metric_code, metadata)
    SELECT invoice.id, l.position, l.type, l.description, l.amount, l.currency_code, l.quantity, l.unit_price,
           l.metric_code, l.metadata
    FROM invoice
    JOIN given USING (subscription_id, billing_period_start)
    CROSS JOIN LATERAL json_to_recordset(given.lines) AS l({LINE_RECORD})
)
SELECT subscription_id, billing_period_start FROM invoice
"""
UPSERT_BILLED = """
INSERT INTO billed_usage (subscription_id, period_start, metric_code, period_end, quantity, amount, currency_code,
                          plan_code, plan_version, share_numerator, share_denominator, allow_overage)
SELECT subscription_id, period_start, metric_code, period_end, quantity, amount, currency_code,
       plan_code, plan_version, share_numerator, share_denominator, allow_overage
FROM json_to_recordset(%s::json) AS r(n int, subscription_id text, period_start timestamptz, metric_code text,
     period_end timestamptz, quantity numeric, amount bigint, currency_code text, plan_code text, plan_version int,
     share_numerator bigint, share_denominator bigint, allow_overage boolean)
ORDER BY n
ON CONFLICT (subscription_id, period_start, metric_code) DO UPDATE SET
    period_end = excluded.period_end, quantity = excluded.quantity, amount = excluded.amount,
    currency_code = excluded.currency_code, plan_code = excluded.plan_code, plan_version = excluded.plan_version,
    share_numerator = excluded.share_numerator, share_denominator = excluded.share_denominator,
    allow_overage = excluded.allow_overage
"""
INSERT_OUTBOX = """
INSERT INTO outbox (topic, key, payload)
SELECT topic, key, payload FROM json_to_recordset(%s::json) AS r(n int, topic text, key text, payload jsonb) ORDER BY n
"""


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def invoices_json(invoices: Sequence[Invoice]) -> str:
    return json.dumps(
        [
            {
                "n": n,
                "tenant_id": i.tenant_id,
                "subscription_id": i.subscription_id,
                "billing_period_start": i.period.start.isoformat(),
                "billing_period_end": i.period.end.isoformat(),
                "currency_code": i.currency_code,
                "status": str(i.status),
                "invoice_number": i.invoice_number,
                "issued_at": None if i.issued_at is None else i.issued_at.isoformat(),
                "plan_code": i.plan_code,
                "subtotal": i.subtotal.amount,
                "discount_total": i.discount_total.amount,
                "tax_total": i.tax_total.amount,
                "total": i.total.amount,
                "credits_applied": i.credits_applied.amount,
                "amount_paid": i.amount_paid.amount,
                "amount_due": i.amount_due.amount,
                "metadata": dict(i.metadata),
                "lines": [
                    {
                        "position": position,
                        "type": str(line.type),
                        "description": line.description,
                        "amount": line.amount.amount,
                        "currency_code": line.amount.currency,
                        "quantity": _decimal_text(line.quantity),
                        "unit_price": _decimal_text(line.unit_price),
                        "metric_code": line.metric_code,
                        "metadata": dict(line.metadata),
                    }
                    for position, line in enumerate(i.line_items)
                ],
            }
            for n, i in enumerate(invoices)
        ]
    )


def billed_json(rows: Sequence[BilledUsage]) -> str:
    """The rows, the last of each key only: the upsert of one statement may touch a row once, and
    the last write of a key is what writing them one by one leaves."""
    last = {(b.subscription_id, b.period_start, b.metric_code): b for b in rows}
    return json.dumps(
        [
            {
                "n": n,
                "subscription_id": b.subscription_id,
                "period_start": b.period_start.isoformat(),
                "metric_code": b.metric_code,
                "period_end": b.period_end.isoformat(),
                "quantity": str(b.quantity),
                "amount": b.amount.amount,
                "currency_code": b.amount.currency,
                "plan_code": b.plan_code,
                "plan_version": b.plan_version,
                "share_numerator": b.share.numerator,
                "share_denominator": b.share.denominator,
                "allow_overage": b.allow_overage,
            }
            for n, b in enumerate(last.values())
        ]
    )


def outbox_json(messages: Sequence[OutboxMessage]) -> str:
    return json.dumps([{"n": n, "topic": m.topic, "key": m.key, "payload": m.payload} for n, m in enumerate(messages)])


def not_inserted(invoices: Sequence[Invoice], inserted: Sequence[tuple[Any, ...]]) -> Invoice | None:
    """The first of ``invoices`` not among the (subscription, period start) rows INSERT_INVOICES returned."""
    if len(inserted) == len(invoices):
        return None
    done = {(row[0], row[1]) for row in inserted}
    return next(i for i in invoices if (i.subscription_id, i.period.start) not in done)


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
        first, cursor = connection.cursor(), connection.cursor()
        try:
            with connection.pipeline():  # one round trip for all of it
                if invoices:
                    first.execute(INSERT_INVOICES, (invoices_json(invoices),))
                if billed:
                    cursor.execute(UPSERT_BILLED, (billed_json(billed),))
                if outbox:
                    cursor.execute(INSERT_OUTBOX, (outbox_json(outbox),))
                for counter in counters:
                    cursor.execute(SET_NUMBER, counter)
            conflict = not_inserted(invoices, first.fetchall()) if invoices else None
        finally:
            first.close()
            cursor.close()
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
    balances: dict[str, Counter[str]] = field(default_factory=dict)  # unlocked credit balances read
    failed: BaseException | None = None

    def read_ahead(self, connection: PgConnection[Any], periods: Sequence[tuple[str, datetime]]) -> None:
        """Which of ``periods`` have no invoice yet, and the credit balances of their subscriptions,
        in one round trip for the whole batch instead of one per finalization."""
        subscriptions = sorted({sub for sub, _ in periods})
        absent, notes, used = connection.cursor(), connection.cursor(), connection.cursor()
        try:
            with connection.pipeline():
                absent.execute(READ_AHEAD_ABSENT, ([p[0] for p in periods], [p[1] for p in periods]))
                notes.execute(READ_AHEAD_NOTES, (subscriptions,))
                used.execute(READ_AHEAD_USED, (subscriptions,))
            self.absent.update(periods[int(n) - 1] for (n,) in absent.fetchall())
            balances: dict[str, Counter[str]] = {sub: Counter() for sub in subscriptions}
            for sub, currency, amount in notes.fetchall():
                balances[sub][currency] += int(amount)
            for sub, currency, amount in used.fetchall():
                balances[sub][currency] -= int(amount)
            self.balances.update(balances)
        finally:
            absent.close()
            notes.close()
            used.close()
