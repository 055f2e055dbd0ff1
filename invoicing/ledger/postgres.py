"""The ledger on PostgreSQL: one SQLAlchemy Core transaction per session, the same contract as the
memory ledger (tests/contract/test_ledger.py).

* Gapless numbering: the tenant's counter row is bumped with ``INSERT … ON CONFLICT DO UPDATE …
  RETURNING`` inside the finalizing transaction. The row lock serialises finalizations of one
  tenant, and a rolled-back transaction rolls its number back with it, so numbers have no gaps.
* One invoice per (subscription, period): a unique constraint, so a redelivered or concurrent
  finalization fails instead of billing twice (surfaced as the same InvalidValue as in memory;
  the insert is ``ON CONFLICT … DO NOTHING``, so the transaction stays usable as the memory one does).
* Credit: reading or using a subscription's balance takes a transaction-scoped advisory lock on
  it, so two finalizations never both spend the same balance.
* Instants come back in UTC whatever the server's or the session's ``TimeZone``.
* The finalization path runs plain SQL on the psycopg connection and defers billed usage and
  outbox rows to one pipelined round trip before commit (postgres_writes.py); :meth:`PostgresLedger.batch`
  finalizes many invoices in one transaction, each session still all-or-nothing (see there).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, Row, Select, Text, cast, func, select
from sqlalchemy.dialects.postgresql import insert

from invoicing.engine.credit import CreditNote
from invoicing.engine.model import Invoice, InvoiceLineItem, InvoiceStatus, LineType
from invoicing.engine.subscriptions import Subscription, SubscriptionStatus
from invoicing.engine.terms import BillingTerms
from invoicing.ledger import tables as t
from invoicing.ledger.catalog import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS, plan_key
from invoicing.ledger.embedded import embedded_database_url, stop_embedded_database
from invoicing.ledger.json_codec import (
    plan_from_json,
    plan_to_json,
    subscription_to_json,
    terms_from_json,
    terms_to_json,
)
from invoicing.ledger.postgres_writes import (
    BALANCE,
    CREDIT_LOCK,
    FIND_INVOICE,
    INSERT_INVOICES,
    INVOICE_EXISTS,
    LOCK_CREDIT,
    LOCK_NUMBER,
    NEXT_NUMBER,
    PLAN_VERSION,
    Batch,
    Mark,
    Writes,
    invoices_json,
    period_taken,
)
from invoicing.ports import BilledUsage, OutboxMessage, SubscriptionRecord, TermsRecord
from rating.catalog import Plan
from rating.errors import InvalidValue, UnknownReference
from rating.money import Money
from rating.periods import BillingInterval, Period

__all__ = [
    "CREDIT_LOCK",
    "PostgresLedger",
    "PostgresLedgerSession",
    "embedded_database_url",
    "migrate",
    "stop_embedded_database",
]

INERROR = TransactionStatus.INERROR


def _driver(connection: Connection) -> Any:
    """The psycopg connection under a SQLAlchemy one (statements on it join its transaction)."""
    return connection.connection.driver_connection


def _decimal(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def _utc_or_none(instant: datetime | None) -> datetime | None:
    return None if instant is None else instant.astimezone(UTC)


class PostgresLedgerSession:
    def __init__(self, connection: Connection, batch: Batch | None = None) -> None:
        self.db = connection
        self.pg = _driver(connection)  # psycopg, in the same transaction
        self.cur = self.pg.cursor()
        self.batch = batch
        self.writes = Writes() if batch is None else batch.writes
        self._mark = self.writes.mark()
        self._savepoint = False
        # subscription → currency → balance, read without the lock (see credit_balance); a batch's
        # sessions share what the batch read
        self._unlocked_balances: dict[str, Counter[str]] = {} if batch is None else batch.balances

    # -- deferred writes -------------------------------------------------------------------------

    def _see(self, subscription_id: str | None = None) -> None:
        """Before a read that could see deferred rows (of ``subscription_id``, or of any)."""
        w = self.writes
        if (subscription_id is None and (w.invoices or w.billed or w.outbox)) or w.touched[subscription_id or ""]:
            self.flush()

    def flush(self) -> None:
        """Write the deferred rows now; inside a batch, this session's own in its savepoint."""
        if self.batch is None:
            self.writes.flush(self.pg)
            return
        self._open_savepoint()
        self._batch_flush()

    def _open_savepoint(self) -> None:
        """Inside a batch, before this session writes to the database: the rows deferred by
        earlier sessions are written first, then a savepoint makes this session's own undoable."""
        if self.batch is None or self._savepoint:
            return
        before = self._mark
        self._batch_flush(upto=before)
        # what is left deferred is this session's own: a failure forgets all of it
        self._mark = Mark(0, 0, 0, dict(before.numbers), dict(self.writes.written))
        self.cur.execute("SAVEPOINT ledger_session")
        self._savepoint = True

    def _batch_flush(self, upto: Any = None) -> None:
        assert self.batch is not None
        try:
            self.writes.flush(self.pg, upto)
        except BaseException as error:
            self.batch.failed = error  # rows of other sessions may be half written: roll back the batch
            raise

    def _end(self, ok: bool) -> None:
        """Inside a batch: keep this session's work, or give it all back."""
        assert self.batch is not None
        if ok:
            if self._savepoint:
                self.cur.execute("RELEASE SAVEPOINT ledger_session")
            return
        self.batch.plans.clear()
        self.writes.restore(self._mark)
        if self._savepoint:
            try:
                self.cur.execute("ROLLBACK TO SAVEPOINT ledger_session")
                self.cur.execute("RELEASE SAVEPOINT ledger_session")
            except Exception as error:
                self.batch.failed = error
        elif self.pg.info.transaction_status == INERROR:
            self.batch.failed = RuntimeError("a statement failed inside a ledger batch")

    # -- invoices -------------------------------------------------------------------------------

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
                    _decimal(line.quantity),
                    _decimal(line.unit_price),
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
            period=Period(_utc(row.billing_period_start), _utc(row.billing_period_end)),
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
            issued_at=_utc_or_none(row.issued_at),
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

    # -- credits --------------------------------------------------------------------------------

    def credit_balance(self, subscription_id: str, currency: str) -> Money:
        """A positive balance is read again under the subscription's lock, held until the
        transaction ends (reentrant), and a statement after it, so it sees what was committed
        before. A balance of zero needs no lock: nothing can be spent from it, and a credit note
        committed just after the read is as if it came after this finalization (adding a note
        never takes the lock). The unlocked read is the one ``find_invoice`` made in this session
        when there was one (no credit was added or used here since), else one of its own."""
        parameters = {"sub": subscription_id, "cur": currency}
        unlocked = self._unlocked_balances.get(subscription_id)  # read by find_invoice or the batch
        if unlocked is not None:
            balance = unlocked[currency]
        else:
            balance = int(self.cur.execute(BALANCE, parameters).fetchone()[0])
        if balance > 0:
            self.cur.execute(LOCK_CREDIT, (CREDIT_LOCK, subscription_id))
            balance = int(self.cur.execute(BALANCE, parameters).fetchone()[0])
        return Money(balance, currency)

    def add_credit_note(self, note: CreditNote) -> None:
        self._open_savepoint()
        self._unlocked_balances.pop(note.subscription_id, None)
        self.db.execute(
            t.credit_notes.insert().values(
                subscription_id=note.subscription_id,
                type=str(note.type),
                amount=note.amount.amount,
                currency_code=note.amount.currency,
                created_at=note.created_at,
                reason=note.reason,
                invoice_number=note.invoice_number,
            )
        )

    def use_credit(self, subscription_id: str, amount: Money, invoice_number: str) -> None:
        if self.credit_balance(subscription_id, amount.currency).amount < amount.amount:
            raise InvalidValue("credits_applied", f"subscription {subscription_id} has less credit than {amount}")
        self._open_savepoint()
        self._unlocked_balances.pop(subscription_id, None)
        self.db.execute(
            t.credit_usage.insert().values(
                subscription_id=subscription_id,
                amount=amount.amount,
                currency_code=amount.currency,
                invoice_number=invoice_number,
            )
        )

    # -- billed usage, plans, outbox -----------------------------------------------------------

    def billed_usage(self, subscription_id: str) -> list[BilledUsage]:
        self._see(subscription_id)
        rows = self.db.execute(
            select(t.billed_usage)
            .where(t.billed_usage.c.subscription_id == subscription_id)
            .order_by(t.billed_usage.c.period_start, t.billed_usage.c.metric_code)
        )
        return [
            BilledUsage(
                row.subscription_id,
                _utc(row.period_start),
                _utc(row.period_end),
                row.metric_code,
                Decimal(row.quantity),
                Money(int(row.amount), row.currency_code),
                row.plan_code,
                row.plan_version,
                Fraction(row.share_numerator, row.share_denominator),
                row.allow_overage,
            )
            for row in rows
        ]

    def record_billed_usage(self, usage: BilledUsage) -> None:
        self.writes.add_billed(usage)  # written before commit or before a read of it (flush)

    def save_plan(self, tenant_id: str, plan: Plan) -> None:
        """Insert or replace the version's snapshot; a new or changed snapshot is announced on
        ``catalog.plans`` in this transaction (an identical one is not)."""
        self._open_savepoint()
        if self.batch is not None:
            self.batch.plans.pop((tenant_id, plan.code, plan.version), None)
        snapshot = plan_to_json(plan)
        statement = insert(t.plans).values(tenant_id=tenant_id, code=plan.code, version=plan.version, snapshot=snapshot)
        changed = self.db.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant_id", "code", "version"],
                set_={"snapshot": statement.excluded.snapshot},
                # JSON keeps its text, so this also sees a change of metadata key order
                where=cast(t.plans.c.snapshot, Text).is_distinct_from(cast(statement.excluded.snapshot, Text)),
            ).returning(t.plans.c.version)
        ).first()
        if changed is not None:
            key = plan_key(tenant_id, plan.code, plan.version)
            self.add_outbox(OutboxMessage(CATALOG_PLANS, key, {"tenant_id": tenant_id, **snapshot}))

    def get_plan(self, tenant_id: str, code: str, version: int | None = None) -> Plan | None:
        if version is not None:  # the finalization path: plain SQL, and a batch reads a version once
            key = (tenant_id, code, version)
            cached = None if self.batch is None else self.batch.plans.get(key)
            if cached is not None:
                return cached
            row = self.cur.execute(PLAN_VERSION, key).fetchone()
            plan = None if row is None else plan_from_json(row[0])
            if plan is not None and self.batch is not None:
                self.batch.plans[key] = plan
            return plan
        query = select(t.plans.c.snapshot).where(t.plans.c.tenant_id == tenant_id, t.plans.c.code == code)
        query = (
            query.order_by(t.plans.c.version.desc()) if version is None else query.where(t.plans.c.version == version)
        )
        snapshot = self.db.execute(query.limit(1)).scalar_one_or_none()
        return None if snapshot is None else plan_from_json(snapshot)

    # -- subscriptions -------------------------------------------------------------------------

    @staticmethod
    def _subscription(row: Row[Any]) -> SubscriptionRecord:
        subscription = Subscription(
            id=row.id,
            tenant_id=row.tenant_id,
            plan_code=row.plan_code,
            start_at=_utc(row.start_at),
            timezone=row.timezone,
            region_code=row.region_code,
            allow_overage_billing=row.allow_overage_billing,
            trial_days=row.trial_days,
            trial_balance=_decimal(row.trial_balance),
            has_payment_method=row.has_payment_method,
            coupon_code=row.coupon_code,
        )
        interval, status = BillingInterval(row.billing_interval), SubscriptionStatus(row.status)
        return SubscriptionRecord(subscription, row.plan_version, interval, status, row.revision)

    def _subscription_query(self) -> Select[Any]:
        interval = t.plans.c.snapshot["billing_interval"].as_string().label("billing_interval")
        return select(t.subscriptions, interval).join(
            t.plans,
            (t.plans.c.tenant_id == t.subscriptions.c.tenant_id)
            & (t.plans.c.code == t.subscriptions.c.plan_code)
            & (t.plans.c.version == t.subscriptions.c.plan_version),
        )

    def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        row = self.db.execute(self._subscription_query().where(t.subscriptions.c.id == subscription_id)).first()
        return None if row is None else self._subscription(row)

    def save_subscription(
        self,
        subscription: Subscription,
        plan_version: int | None = None,
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    ) -> SubscriptionRecord:
        """Create or change a subscription on a saved plan version (the newest when None) and
        announce it on ``catalog.subscriptions`` in this transaction; saving what is stored
        already changes and announces nothing. Concurrent changes of one subscription take turns
        (a row lock), so its revisions and messages follow commit order."""
        plan = self.get_plan(subscription.tenant_id, subscription.plan_code, plan_version)
        if plan is None:
            version = "" if plan_version is None else f" version {plan_version}"
            raise UnknownReference(
                "plan_code", f"tenant {subscription.tenant_id} has no plan {subscription.plan_code!r}{version}"
            )
        values = {
            "tenant_id": subscription.tenant_id,
            "plan_code": subscription.plan_code,
            "plan_version": plan.version,
            "start_at": subscription.start_at,
            "timezone": subscription.timezone,
            "region_code": subscription.region_code,
            "allow_overage_billing": subscription.allow_overage_billing,
            "trial_days": subscription.trial_days,
            "trial_balance": subscription.trial_balance,
            "has_payment_method": subscription.has_payment_method,
            "coupon_code": subscription.coupon_code,
            "status": str(status.value),
        }
        for _ in range(2):  # a concurrent creation of the same id: the second pass finds its row
            query = self._subscription_query().where(t.subscriptions.c.id == subscription.id)
            current = self.db.execute(query.with_for_update(of=t.subscriptions)).first()
            if current is not None:
                stored = self._subscription(current)
                if stored.subscription.tenant_id != subscription.tenant_id:
                    raise InvalidValue("tenant_id", f"subscription {subscription.id} belongs to another tenant")
                if (stored.subscription, stored.plan_version, stored.status) == (subscription, plan.version, status):
                    return stored
                revision = stored.revision + 1
                self.db.execute(
                    t.subscriptions.update()
                    .where(t.subscriptions.c.id == subscription.id)
                    .values(**values, revision=revision, updated_at=func.now())
                )
                break
            revision = 1
            inserted = self.db.execute(
                insert(t.subscriptions)
                .values(id=subscription.id, **values, revision=revision)
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(t.subscriptions.c.id)
            ).first()
            if inserted is not None:
                break
        else:  # pragma: no cover - the row existed on the second pass
            raise AssertionError(f"subscription {subscription.id} neither found nor inserted")
        record = SubscriptionRecord(subscription, plan.version, plan.billing_interval, status, revision)
        self.add_outbox(OutboxMessage(CATALOG_SUBSCRIPTIONS, subscription.id, subscription_to_json(record)))
        return record

    # -- terms ----------------------------------------------------------------------------------

    def get_terms(self, tenant_id: str) -> TermsRecord | None:
        query = select(t.tenant_terms.c.terms, t.tenant_terms.c.revision)
        row = self.db.execute(query.where(t.tenant_terms.c.tenant_id == tenant_id)).first()
        return None if row is None else TermsRecord(terms_from_json(row.terms), int(row.revision))

    def save_terms(self, terms: BillingTerms) -> TermsRecord:
        """Create or change the tenant's terms and announce them on ``catalog.terms`` in this
        transaction; saving what is stored already (the same ``terms_to_json``) changes and
        announces nothing. Concurrent changes of one tenant's terms take turns (a row lock), so
        their revisions and messages follow commit order. Terms that would not read back
        (``terms_from_json``) are refused, naming the field."""
        self._open_savepoint()
        value = terms_to_json(terms)
        saved = terms_from_json(value)  # what every reader of the row or the topic gets
        table = t.tenant_terms
        for _ in range(2):  # a concurrent creation for the same tenant: the second pass finds its row
            query = select(table.c.terms, table.c.revision).where(table.c.tenant_id == terms.tenant_id)
            current = self.db.execute(query.with_for_update()).first()
            if current is not None:
                if current.terms == value:  # JSONB: lists keep their order, objects compare by key
                    return TermsRecord(terms_from_json(current.terms), int(current.revision))
                revision = int(current.revision) + 1
                self.db.execute(
                    table.update()
                    .where(table.c.tenant_id == terms.tenant_id)
                    .values(terms=value, revision=revision, updated_at=func.now())
                )
                break
            revision = 1
            inserted = self.db.execute(
                insert(table)
                .values(tenant_id=terms.tenant_id, terms=value, revision=revision)
                .on_conflict_do_nothing(index_elements=["tenant_id"])
                .returning(table.c.tenant_id)
            ).first()
            if inserted is not None:
                break
        else:  # pragma: no cover - the row existed on the second pass
            raise AssertionError(f"terms of tenant {terms.tenant_id} neither found nor inserted")
        self.add_outbox(OutboxMessage(CATALOG_TERMS, terms.tenant_id, {**value, "revision": revision}))
        return TermsRecord(saved, revision)

    # -- outbox ---------------------------------------------------------------------------------

    def add_outbox(self, message: OutboxMessage) -> None:
        self.writes.outbox.append(message)  # written, in order, before commit (flush)


class _OpenBatch(threading.local):
    """The batch this thread has open, if any."""

    batch: Batch | None = None


class PostgresLedger:
    """The Ledger port on a SQLAlchemy engine (``postgresql+psycopg://…``) migrated by :func:`migrate`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = _OpenBatch()

    @contextmanager
    def session(self) -> Iterator[PostgresLedgerSession]:
        batch = self._local.batch
        if batch is None:
            with self.engine.begin() as connection:
                session = PostgresLedgerSession(connection)
                yield session
                session.flush()
            return
        if batch.failed is not None:
            raise RuntimeError("the ledger batch failed and will roll back") from batch.failed
        session = PostgresLedgerSession(batch.connection, batch)
        try:
            yield session
        except BaseException:
            session._end(ok=False)
            raise
        session._end(ok=True)

    @contextmanager
    def batch(self, periods: Sequence[tuple[str, datetime]] = ()) -> Iterator[None]:
        """One transaction for every session this thread opens inside the block, committed once
        at its end: many finalizations per commit instead of one.

        What a session guarantees still holds for each session inside: its invoice, billed usage
        and outbox rows commit together or not at all (a session that raises gives back what it
        deferred, and whatever it wrote is undone through its savepoint), one invoice per
        (subscription, period) (a period already invoiced is refused when its invoice is added, or,
        if another transaction invoices it meanwhile, when the batch writes its rows: then the
        whole batch rolls back), and gapless numbering: the batch locks each tenant's counter row
        on first use and counts on from it, a failed session returns its numbers, and the row is
        written with the batch's rows, so a rollback of the batch returns every number it took.
        Nothing is committed before the block ends without an error; the caller acknowledges the
        batch's work (offsets, replies) only after that. The counter and credit locks are held
        until then. Batches do not nest; other threads' sessions stay outside.

        ``periods`` (subscription, period start) are those the caller is about to finalize: the
        batch reads which have no invoice yet and their subscriptions' credit balances in one
        round trip, and ``find_invoice`` and ``credit_balance`` answer from that (a period
        invoiced by another transaction meanwhile is still caught when the batch writes)."""
        if self._local.batch is not None:
            raise RuntimeError("ledger batches do not nest")
        with self.engine.begin() as connection:
            batch = Batch(connection)
            self._local.batch = batch
            try:
                if periods:
                    batch.read_ahead(_driver(connection), periods)
                yield
                if batch.failed is not None:
                    raise RuntimeError("the ledger batch failed and rolls back") from batch.failed
                batch.writes.flush(_driver(connection))
            finally:
                self._local.batch = None


# -- migrations ----------------------------------------------------------------------------------


_MIGRATING = threading.Lock()


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``); idempotent and
    safe to run from several processes at once (they take turns, see migrations/env.py)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("invoicing.ledger").joinpath("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolates %
    with _MIGRATING:  # Alembic's context and op are module globals: one migration per process at a time
        command.upgrade(config, "head")
