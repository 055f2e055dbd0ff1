"""The ``ApiLedger`` port on PostgreSQL: the served API's reads, tenant-scoped and paged by keyset
(``WHERE key > last ORDER BY key LIMIT n``), through the ledger's own session parts so a row reads
back as the same value the finalization path writes; and plan creation, serialised per tenant."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, and_, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert

from invoicing.engine.credit import CreditNote, CreditType, InvoiceBalance, credit_invoice
from invoicing.engine.lifecycle import due_at
from invoicing.engine.model import InvoiceStatus
from invoicing.engine.subscriptions import SubscriptionStatus
from invoicing.ledger import tables as t
from invoicing.ledger.json_codec import plan_from_json
from invoicing.ledger.postgres import PostgresLedger, PostgresLedgerSession
from invoicing.ledger.postgres_session import utc
from invoicing.ports import StoredCreditNote, StoredInvoice, StoredPlan, SubscriptionRecord
from rating.catalog import Plan
from rating.money import Money

SUBSCRIPTION_LOCK: Final = 0x0B0C7  # first key of the per-subscription lock; the second is the id's hash
_BALANCE_COLUMNS: Final = ("amount_paid", "amount_due", "amount_credited", "amount_refunded")


def _newest() -> Any:
    """The newest version of each (tenant, code), as a correlated scalar subquery."""
    newer = t.plans.alias("newer")
    return (
        select(func.max(newer.c.version))
        .where(newer.c.tenant_id == t.plans.c.tenant_id, newer.c.code == t.plans.c.code)
        .scalar_subquery()
    )


def _stored_plan(row: Row[Any]) -> StoredPlan:
    return StoredPlan(row.tenant_id, plan_from_json(row.snapshot), utc(row.created_at), row.version == row.newest)


def status_is(status: SubscriptionStatus, now: datetime) -> Any:
    """Rows whose status at ``now`` is ``status``: ``invoicing.engine.subscriptions.status_at`` in SQL
    (``effective_at`` may be NULL, so NULLs are tested explicitly)."""
    s = t.subscriptions.c
    written = s.status
    took_effect = and_(s.cancel_at.is_not(None), s.cancel_at <= now)
    canceled = or_(took_effect, and_(s.cancel_at.is_(None), written == "CANCELED"))
    expired_before = and_(s.cancel_at.is_(None), written == "TRIAL_EXPIRED")
    going = and_(~canceled, written != "PAST_DUE", ~expired_before)
    trial_over = and_(s.trial_end_at.is_not(None), s.trial_end_at <= now)
    expired = and_(trial_over, ~s.trial_cut, ~s.has_payment_method)
    match status:
        case SubscriptionStatus.CANCELED:
            return canceled
        case SubscriptionStatus.PAST_DUE:
            return and_(~canceled, written == "PAST_DUE")
        case SubscriptionStatus.TRIALING:
            return and_(going, s.trial_end_at.is_not(None), s.trial_end_at > now)
        case SubscriptionStatus.TRIAL_EXPIRED:
            return or_(expired_before, and_(going, expired))
        case SubscriptionStatus.ACTIVE:
            return and_(going, or_(s.trial_end_at.is_(None), and_(trial_over, ~expired)))


class PostgresApiLedger:
    """The API's reads and plan writes on a PostgreSQL ledger."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self.ledger = ledger

    @contextmanager
    def subscription_session(self, subscription_id: str) -> Iterator[PostgresLedgerSession]:
        """A ledger transaction holding the subscription's lock (until it ends)."""
        with self.ledger.session() as session:
            lock = func.pg_advisory_xact_lock(SUBSCRIPTION_LOCK, func.hashtext(subscription_id))
            session.db.execute(select(lock))
            yield session

    def create_plan(self, tenant_id: str, plan: Plan) -> tuple[StoredPlan, bool]:
        """Save ``plan`` as its code's next version, or find it unchanged (False) (``save_plan_version``)."""
        with self.ledger.session() as session:
            version, is_new = session.save_plan_version(tenant_id, plan)
        stored = self.plan(tenant_id, plan.code, version)
        assert stored is not None
        return stored, is_new

    def _plan_rows(self, where: Any, limit: int) -> list[StoredPlan]:
        query = select(t.plans, _newest().label("newest")).where(where)
        with self.ledger.engine.connect() as connection:
            rows = connection.execute(query.order_by(t.plans.c.code, t.plans.c.version).limit(limit)).all()
        return [_stored_plan(row) for row in rows]

    def plan(self, tenant_id: str, code: str, version: int | None = None) -> StoredPlan | None:
        wanted = _newest() if version is None else version
        found = self._plan_rows(
            and_(t.plans.c.tenant_id == tenant_id, t.plans.c.code == code, t.plans.c.version == wanted), 1
        )
        return found[0] if found else None

    def plans(self, tenant_id: str, newest_only: bool, after: tuple[str, int] | None, limit: int) -> list[StoredPlan]:
        where = [t.plans.c.tenant_id == tenant_id]
        if newest_only:
            where.append(t.plans.c.version == _newest())
        if after is not None:
            where.append(tuple_(t.plans.c.code, t.plans.c.version) > tuple_(*after))
        return self._plan_rows(and_(*where), limit)

    def subscriptions(
        self,
        tenant_id: str,
        status: SubscriptionStatus | None,
        plan_code: str | None,
        after: str | None,
        limit: int,
        now: datetime,
    ) -> list[SubscriptionRecord]:
        table = t.subscriptions
        with self.ledger.session() as session:
            query = session._subscription_query().where(table.c.tenant_id == tenant_id)
            if status is not None:
                query = query.where(status_is(status, now))
            if plan_code is not None:
                pending = table.c.effective_at > now
                query = query.where(
                    or_(
                        and_(table.c.previous_plan_code.is_not(None), pending, table.c.previous_plan_code == plan_code),
                        and_(or_(table.c.previous_plan_code.is_(None), ~pending), table.c.plan_code == plan_code),
                    )
                )
            if after is not None:
                query = query.where(table.c.id > after)
            rows = session.db.execute(query.order_by(table.c.id).limit(limit)).all()
            return [session._subscription(row) for row in rows]

    def last_invoice_sequence(self, tenant_id: str) -> int:
        sequences = t.invoice_sequences
        with self.ledger.engine.connect() as connection:
            last = connection.execute(
                select(sequences.c.last_number).where(sequences.c.tenant_id == tenant_id)
            ).scalar_one_or_none()
        return 0 if last is None else int(last)

    def invoice(self, tenant_id: str, invoice_id: int) -> StoredInvoice | None:
        found = self._invoices(and_(t.invoices.c.tenant_id == tenant_id, t.invoices.c.id == invoice_id), 1)
        return found[0] if found else None

    def invoices(
        self,
        tenant_id: str,
        subscription_id: str | None,
        status: InvoiceStatus | None,
        after: int | None,
        limit: int,
    ) -> list[StoredInvoice]:
        where = [t.invoices.c.tenant_id == tenant_id]
        if subscription_id is not None:
            where.append(t.invoices.c.subscription_id == subscription_id)
        if status is not None:
            where.append(t.invoices.c.status == str(status.value))
        if after is not None:
            where.append(t.invoices.c.id > after)
        return self._invoices(and_(*where), limit)

    def _invoices(self, where: Any, limit: int) -> list[StoredInvoice]:
        with self.ledger.session() as session:
            rows = session.db.execute(select(t.invoices).where(where).order_by(t.invoices.c.id).limit(limit)).all()
            invoices = session._invoices(rows)
            terms = {tenant: session.payment_terms(tenant) for tenant in {invoice.tenant_id for invoice in invoices}}
        stored = []
        for row, invoice in zip(rows, invoices, strict=True):
            issued = invoice.issued_at
            stored.append(
                StoredInvoice(
                    int(row.id),
                    invoice,
                    int(row.amount_credited),
                    int(row.amount_refunded),
                    None if row.paid_at is None else utc(row.paid_at),
                    None if issued is None else due_at(issued, terms[invoice.tenant_id]),
                )
            )
        return stored

    # -- credit notes ------------------------------------------------------------------------------

    def add_credit_note(
        self, tenant_id: str, note: CreditNote, idempotency_key: str | None
    ) -> tuple[StoredCreditNote, bool]:
        """Add the tenant's note (the row the balance query reads), or find the subscription's note of
        that key: a concurrent twin waits on the unique index and then finds the first one's row."""
        notes = t.credit_notes
        values = {
            "tenant_id": tenant_id,
            "subscription_id": note.subscription_id,
            "type": str(note.type),
            "amount": note.amount.amount,
            "currency_code": note.amount.currency,
            "created_at": note.created_at,
            "reason": note.reason,
            "invoice_number": note.invoice_number,
            "idempotency_key": idempotency_key,
        }
        statement = insert(notes).values(**values)
        if idempotency_key is not None:
            statement = statement.on_conflict_do_nothing(
                index_elements=["subscription_id", "idempotency_key"],
                index_where=notes.c.idempotency_key.isnot(None),
            )
        with self.ledger.engine.begin() as connection:
            added = connection.execute(statement.returning(notes.c.id)).scalar_one_or_none()
            created = added is not None
            if added is None:
                added = connection.execute(
                    select(notes.c.id).where(
                        notes.c.tenant_id == tenant_id,
                        notes.c.subscription_id == note.subscription_id,
                        notes.c.idempotency_key == idempotency_key,
                    )
                ).scalar_one()
        return self._credit_notes(t.credit_notes.c.id == added, 1)[0], created

    def credit_invoice(
        self, tenant_id: str, invoice_id: int, note: CreditNote, idempotency_key: str | None
    ) -> tuple[StoredCreditNote, bool] | None:
        """Add an ADJUSTMENT or REFUND ``note`` against the tenant's invoice ``invoice_id`` and move
        the invoice by it (``credit_invoice``), in one transaction holding the invoice's row lock,
        so two notes never take the same amount twice; or find the subscription's note of that key
        (False, nothing changed). None when the tenant has no such invoice. The note's subscription
        and invoice number are the invoice's. Raises what ``credit_invoice`` raises, changing nothing."""
        invoices, notes = t.invoices, t.credit_notes
        with self.ledger.session() as session:
            row = session.db.execute(
                select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id).with_for_update()
            ).one_or_none()
            if row is None:
                return None
            note = replace(note, subscription_id=row.subscription_id, invoice_number=row.invoice_number)
            if idempotency_key is not None:
                found = session.db.execute(
                    select(notes.c.id).where(
                        notes.c.tenant_id == tenant_id,
                        notes.c.subscription_id == note.subscription_id,
                        notes.c.idempotency_key == idempotency_key,
                    )
                ).scalar_one_or_none()
                if found is not None:
                    return self._credit_notes(notes.c.id == found, 1)[0], False
            currency = row.currency_code
            before = InvoiceBalance(
                InvoiceStatus(row.status),
                *(Money(int(getattr(row, name)), currency) for name in _BALANCE_COLUMNS),
            )
            after = credit_invoice(before, note.type, note.amount)
            session.db.execute(
                invoices.update()
                .where(invoices.c.id == invoice_id)
                .values(
                    status=str(after.status),
                    **{name: getattr(after, name).amount for name in _BALANCE_COLUMNS},
                )
            )
            added = session.db.execute(
                insert(notes)
                .values(
                    tenant_id=tenant_id,
                    subscription_id=note.subscription_id,
                    type=str(note.type),
                    amount=note.amount.amount,
                    currency_code=note.amount.currency,
                    created_at=note.created_at,
                    reason=note.reason,
                    invoice_number=note.invoice_number,
                    idempotency_key=idempotency_key,
                )
                .returning(notes.c.id)
            ).scalar_one()
        return self._credit_notes(notes.c.id == added, 1)[0], True

    def credit_notes(
        self, tenant_id: str, subscription_id: str | None, invoice_number: str | None, after: int | None, limit: int
    ) -> list[StoredCreditNote]:
        where = [t.credit_notes.c.tenant_id == tenant_id]
        if subscription_id is not None:
            where.append(t.credit_notes.c.subscription_id == subscription_id)
        if invoice_number is not None:
            where.append(t.credit_notes.c.invoice_number == invoice_number)
        if after is not None:
            where.append(t.credit_notes.c.id > after)
        return self._credit_notes(and_(*where), limit)

    def _credit_notes(self, where: Any, limit: int) -> list[StoredCreditNote]:
        notes, invoices = t.credit_notes, t.invoices
        query = (
            select(notes, invoices.c.id.label("invoice_id"))
            .outerjoin(
                invoices,
                (invoices.c.tenant_id == notes.c.tenant_id) & (invoices.c.invoice_number == notes.c.invoice_number),
            )
            .where(where)
            .order_by(notes.c.id)
            .limit(limit)
        )
        with self.ledger.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_stored_note(row) for row in rows]


def _stored_note(row: Row[Any]) -> StoredCreditNote:
    amount = Money(int(row.amount), row.currency_code)
    note = CreditNote(
        row.subscription_id, CreditType(row.type), amount, utc(row.created_at), row.reason, row.invoice_number
    )
    invoice_id = None if row.invoice_id is None else int(row.invoice_id)
    return StoredCreditNote(int(row.id), row.tenant_id, note, invoice_id, row.idempotency_key)
