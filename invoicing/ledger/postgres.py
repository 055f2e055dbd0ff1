"""The ledger on PostgreSQL: one SQLAlchemy Core transaction per session, the same contract as the
memory ledger (tests/contract/test_ledger.py).

* Gapless numbering: the tenant's counter row is bumped with ``INSERT … ON CONFLICT DO UPDATE …
  RETURNING`` inside the finalizing transaction. The row lock serialises finalizations of one
  tenant, and a rolled-back transaction rolls its number back with it, so numbers have no gaps.
* One invoice per (subscription, period): a unique constraint, so a redelivered or concurrent
  finalization fails instead of billing twice (surfaced as the same InvalidValue as in memory,
  from a savepoint, so the transaction stays usable as the memory one does).
* Credit: reading or using a subscription's balance takes a transaction-scoped advisory lock on
  it, so two finalizations never both spend the same balance.
* Instants come back in UTC whatever the server's or the session's ``TimeZone``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, Text, cast, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.model import Invoice, InvoiceLineItem, InvoiceStatus, LineType
from invoicing.engine.subscriptions import Subscription, SubscriptionStatus
from invoicing.ledger import tables as t
from invoicing.ledger.catalog import (
    CATALOG_PLANS,
    CATALOG_SUBSCRIPTIONS,
    SubscriptionRecord,
    plan_key,
    subscription_to_json,
)
from invoicing.ledger.embedded import embedded_database_url, stop_embedded_database
from invoicing.ledger.snapshots import plan_from_json, plan_to_json
from invoicing.ports import BilledUsage, OutboxMessage
from rating.catalog import Plan
from rating.errors import InvalidValue, UnknownReference
from rating.money import Money
from rating.periods import BillingInterval, Period

__all__ = ["PostgresLedger", "PostgresLedgerSession", "embedded_database_url", "migrate", "stop_embedded_database"]

CREDIT_LOCK = 0x0C4ED  # first key of the two-key advisory lock on a subscription's credit balance


def _decimal(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def _utc_or_none(instant: datetime | None) -> datetime | None:
    return None if instant is None else instant.astimezone(UTC)


class PostgresLedgerSession:
    def __init__(self, connection: Connection) -> None:
        self.db = connection

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
        rows = self.db.execute(
            select(t.invoices).where(
                t.invoices.c.subscription_id == subscription_id, t.invoices.c.billing_period_start == period_start
            )
        ).all()
        found = self._invoices(rows)
        return found[0] if found else None

    def next_invoice_sequence(self, tenant_id: str) -> int:
        statement = (
            insert(t.invoice_sequences)
            .values(tenant_id=tenant_id, last_number=1)
            .on_conflict_do_update(
                index_elements=[t.invoice_sequences.c.tenant_id],
                set_={"last_number": t.invoice_sequences.c.last_number + 1},
            )
            .returning(t.invoice_sequences.c.last_number)
        )
        return int(self.db.execute(statement).scalar_one())

    def add_invoice(self, invoice: Invoice) -> None:
        values = {
            "tenant_id": invoice.tenant_id,
            "subscription_id": invoice.subscription_id,
            "billing_period_start": invoice.period.start,
            "billing_period_end": invoice.period.end,
            "currency_code": invoice.currency_code,
            "status": str(invoice.status),
            "invoice_number": invoice.invoice_number,
            "issued_at": invoice.issued_at,
            "plan_code": invoice.plan_code,
            "subtotal": invoice.subtotal.amount,
            "discount_total": invoice.discount_total.amount,
            "tax_total": invoice.tax_total.amount,
            "total": invoice.total.amount,
            "credits_applied": invoice.credits_applied.amount,
            "amount_paid": invoice.amount_paid.amount,
            "amount_due": invoice.amount_due.amount,
            "metadata": dict(invoice.metadata),
        }
        try:
            # a savepoint: the failed insert must not abort the caller's transaction
            with self.db.begin_nested():
                invoice_id = self.db.execute(t.invoices.insert().values(values).returning(t.invoices.c.id)).scalar_one()
        except IntegrityError as error:
            if getattr(getattr(error.orig, "diag", None), "constraint_name", None) == "invoices_one_per_period":
                raise InvalidValue(
                    "billing_period_start", f"subscription {invoice.subscription_id} has that period's invoice"
                ) from None
            raise
        if invoice.line_items:
            self.db.execute(
                t.invoice_line_items.insert(),
                [
                    {
                        "invoice_id": invoice_id,
                        "position": position,
                        "type": str(line.type),
                        "description": line.description,
                        "amount": line.amount.amount,
                        "currency_code": line.amount.currency,
                        "quantity": line.quantity,
                        "unit_price": line.unit_price,
                        "metric_code": line.metric_code,
                        "metadata": dict(line.metadata),
                    }
                    for position, line in enumerate(invoice.line_items)
                ],
            )

    def list_invoices(self, tenant_id: str, subscription_id: str | None = None) -> list[Invoice]:
        """In the order they were added (ids grow with each insert)."""
        query = select(t.invoices).where(t.invoices.c.tenant_id == tenant_id).order_by(t.invoices.c.id)
        if subscription_id is not None:
            query = query.where(t.invoices.c.subscription_id == subscription_id)
        return self._invoices(self.db.execute(query).all())

    def discounted_invoice_count(self, subscription_id: str) -> int:
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

    def _lock_credit(self, subscription_id: str) -> None:
        """Hold the subscription's balance until this transaction ends; reentrant within it."""
        self.db.execute(select(func.pg_advisory_xact_lock(CREDIT_LOCK, func.hashtext(subscription_id))))

    def credit_balance(self, subscription_id: str, currency: str) -> Money:
        self._lock_credit(subscription_id)
        notes = (
            select(func.coalesce(func.sum(t.credit_notes.c.amount), 0))
            .where(
                t.credit_notes.c.subscription_id == subscription_id,
                t.credit_notes.c.currency_code == currency,
                t.credit_notes.c.type == str(CreditType.BALANCE),
            )
            .scalar_subquery()
        )
        used = (
            select(func.coalesce(func.sum(t.credit_usage.c.amount), 0))
            .where(t.credit_usage.c.subscription_id == subscription_id, t.credit_usage.c.currency_code == currency)
            .scalar_subquery()
        )
        return Money(int(self.db.execute(select(notes - used)).scalar_one()), currency)

    def add_credit_note(self, note: CreditNote) -> None:
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
        values = {
            "subscription_id": usage.subscription_id,
            "period_start": usage.period_start,
            "metric_code": usage.metric_code,
            "period_end": usage.period_end,
            "quantity": usage.quantity,
            "amount": usage.amount.amount,
            "currency_code": usage.amount.currency,
            "plan_code": usage.plan_code,
            "plan_version": usage.plan_version,
            "share_numerator": usage.share.numerator,
            "share_denominator": usage.share.denominator,
            "allow_overage": usage.allow_overage,
        }
        statement = insert(t.billed_usage).values(values)
        keys = ("subscription_id", "period_start", "metric_code")
        self.db.execute(
            statement.on_conflict_do_update(
                index_elements=list(keys), set_={k: statement.excluded[k] for k in values if k not in keys}
            )
        )

    def save_plan(self, tenant_id: str, plan: Plan) -> None:
        """Insert or replace the version's snapshot; a new or changed snapshot is announced on
        ``catalog.plans`` in this transaction (an identical one is not)."""
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

    # -- outbox ---------------------------------------------------------------------------------

    def add_outbox(self, message: OutboxMessage) -> None:
        self.db.execute(t.outbox.insert().values(topic=message.topic, key=message.key, payload=message.payload))


class PostgresLedger:
    """The Ledger port on a SQLAlchemy engine (``postgresql+psycopg://…``) migrated by :func:`migrate`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def session(self) -> Iterator[PostgresLedgerSession]:
        with self.engine.begin() as connection:
            yield PostgresLedgerSession(connection)


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
