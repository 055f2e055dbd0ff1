"""Invoices and their gapless numbers in a PostgreSQL ledger session (numbering and the one invoice
per period are explained in postgres.py)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select

from invoicing.engine.model import Invoice, InvoiceLineItem, InvoiceStatus, LineType
from invoicing.ledger import tables as t
from invoicing.ledger.postgres_session import PostgresSessionBase, decimal_or_none, utc, utc_or_none
from invoicing.ledger.postgres_writes import (
    FIND_INVOICE,
    INSERT_INVOICES,
    INVOICE_EXISTS,
    LOCK_NUMBER,
    NEXT_NUMBER,
    invoices_json,
    period_taken,
)
from rating.money import Money
from rating.periods import Period


class PostgresInvoiceSession(PostgresSessionBase):
    """The InvoiceSession port: plain SQL on the finalization path, deferred inside a batch."""

    def _invoices(self, rows: Sequence[Row[Any]]) -> list[Invoice]:
        """Invoice values of ``rows``, their line items read in one query."""
        if not rows:
            return []
        lines: dict[int, list[InvoiceLineItem]] = defaultdict(list)
        query = (
            select(t.invoice_line_items)
            .where(t.invoice_line_items.c.invoice_id.in_([row.id for row in rows]))
            .order_by(t.invoice_line_items.c.invoice_id, t.invoice_line_items.c.position)
        )
        for line in self.db.execute(query):
            lines[line.invoice_id].append(
                InvoiceLineItem(
                    LineType(line.type),
                    line.description,
                    Money(int(line.amount), line.currency_code),
                    decimal_or_none(line.quantity),
                    decimal_or_none(line.unit_price),
                    line.metric_code,
                    dict(line.metadata),
                )
            )
        return [self._invoice(row, lines[row.id]) for row in rows]

    @staticmethod
    def _invoice(row: Row[Any], lines: list[InvoiceLineItem]) -> Invoice:
        currency = row.currency_code

        def money(amount: int) -> Money:
            return Money(int(amount), currency)

        return Invoice(
            tenant_id=row.tenant_id,
            subscription_id=row.subscription_id,
            period=Period(utc(row.billing_period_start), utc(row.billing_period_end)),
            currency_code=currency,
            line_items=tuple(lines),
            subtotal=money(row.subtotal),
            discount_total=money(row.discount_total),
            tax_total=money(row.tax_total),
            total=money(row.total),
            credits_applied=money(row.credits_applied),
            amount_paid=money(row.amount_paid),
            amount_due=money(row.amount_due),
            status=InvoiceStatus(row.status),
            invoice_number=row.invoice_number,
            issued_at=utc_or_none(row.issued_at),
            plan_code=row.plan_code,
            metadata=dict(row.metadata),
        )

    def find_invoice(self, subscription_id: str, period_start: datetime) -> Invoice | None:
        key = (subscription_id, period_start)
        pending = self.writes.pending_invoices.get(key)
        if pending is not None:
            return pending
        if self.batch is not None and key in self.batch.absent:
            return None  # read ahead by the batch (or found absent before in it)
        found, notes, used = self.cur.execute(FIND_INVOICE, {"sub": subscription_id, "start": period_start}).fetchone()
        balances = Counter({currency: int(amount) for currency, amount in (notes or {}).items()})
        balances.subtract({currency: int(amount) for currency, amount in (used or {}).items()})
        self._unlocked_balances[subscription_id] = balances
        if found is None:
            if self.batch is not None:
                self.batch.absent.add(key)
            return None
        return self._invoices(self.db.execute(select(t.invoices).where(t.invoices.c.id == found)).all())[0]

    def next_invoice_sequence(self, tenant_id: str) -> int:
        if self.batch is None:
            return int(self.cur.execute(NEXT_NUMBER, (tenant_id,)).fetchone()[0])
        # a batch locks the counter row once and counts on; the row is written when the batch's
        # rows are, and a failed session gives its numbers back (Writes.restore)
        numbers = self.writes.numbers
        if tenant_id not in numbers:
            current = int(self.cur.execute(LOCK_NUMBER, (tenant_id,)).fetchone()[0])
            numbers[tenant_id] = self.writes.written[tenant_id] = current
        numbers[tenant_id] += 1
        return numbers[tenant_id]

    def add_invoice(self, invoice: Invoice) -> None:
        if self.batch is None:
            if not self.cur.execute(INSERT_INVOICES, (invoices_json([invoice]),)).fetchall():
                raise period_taken(invoice)
            return
        key = (invoice.subscription_id, invoice.period.start)
        if key in self.writes.pending_invoices:
            raise period_taken(invoice)
        if key not in self.batch.absent and self.cur.execute(INVOICE_EXISTS, key).fetchone() is not None:
            raise period_taken(invoice)
        self.batch.absent.discard(key)
        self.writes.add_invoice(invoice)

    def list_invoices(self, tenant_id: str, subscription_id: str | None = None) -> list[Invoice]:
        """In the order they were added (ids grow with each insert)."""
        self._see()
        query = select(t.invoices).where(t.invoices.c.tenant_id == tenant_id).order_by(t.invoices.c.id)
        if subscription_id is not None:
            query = query.where(t.invoices.c.subscription_id == subscription_id)
        return self._invoices(self.db.execute(query).all())

    def discounted_invoice_count(self, subscription_id: str) -> int:
        self._see(subscription_id)
        discounted = (
            select(t.invoice_line_items.c.invoice_id)
            .where(
                t.invoice_line_items.c.invoice_id == t.invoices.c.id,
                t.invoice_line_items.c.type == str(LineType.DISCOUNT),
            )
            .exists()
        )
        query = select(func.count()).select_from(t.invoices).where(t.invoices.c.subscription_id == subscription_id)
        return int(self.db.execute(query.where(discounted)).scalar_one())
