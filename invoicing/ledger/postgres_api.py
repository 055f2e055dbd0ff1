"""The ``ApiLedger`` port on PostgreSQL: the served API's reads, tenant-scoped and paged by keyset
(``WHERE key > last ORDER BY key LIMIT n``), through the ledger's own session parts so a row reads
back as the same value the finalization path writes; and plan creation, serialised per tenant."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from sqlalchemy import Row, and_, func, select, tuple_

from invoicing.engine.model import InvoiceStatus
from invoicing.engine.subscriptions import SubscriptionStatus
from invoicing.ledger import tables as t
from invoicing.ledger.catalog import plan_version_for
from invoicing.ledger.json_codec import plan_from_json
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ledger.postgres_session import utc
from invoicing.ports import StoredInvoice, StoredPlan, SubscriptionRecord
from rating.catalog import Plan

PLAN_LOCK: Final = 0x0B0C6  # first key of the per-tenant plan lock; the second is the tenant's hash


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


class PostgresApiLedger:
    """The API's reads and plan writes on a PostgreSQL ledger."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self.ledger = ledger

    def create_plan(self, tenant_id: str, plan: Plan) -> tuple[StoredPlan, bool]:
        """Save ``plan`` as its code's next version, or find it unchanged (False). Creations of one
        tenant take turns on a transaction lock, so two never claim the same version."""
        with self.ledger.session() as session:
            session.db.execute(select(func.pg_advisory_xact_lock(PLAN_LOCK, func.hashtext(tenant_id))))
            version, is_new = plan_version_for(plan, session.get_plan(tenant_id, plan.code))
            if is_new:
                session.save_plan(tenant_id, replace(plan, version=version))
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
    ) -> list[SubscriptionRecord]:
        table = t.subscriptions
        with self.ledger.session() as session:
            query = session._subscription_query().where(table.c.tenant_id == tenant_id)
            if status is not None:
                query = query.where(table.c.status == str(status.value))
            if plan_code is not None:
                query = query.where(table.c.plan_code == plan_code)
            if after is not None:
                query = query.where(table.c.id > after)
            rows = session.db.execute(query.order_by(table.c.id).limit(limit)).all()
            return [session._subscription(row) for row in rows]

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
        return [StoredInvoice(int(row.id), invoice) for row, invoice in zip(rows, invoices, strict=True)]
