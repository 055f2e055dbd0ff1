"""The ``InvoiceDocuments`` port on PostgreSQL: invoices by number or id (read as the API reads
them), the subscription they bill, and tenants' profiles (``tenant_profiles``, migration 0009)."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.dialects.postgresql import insert

from invoicing.engine.printable import TenantProfile
from invoicing.ledger import tables as t
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ledger.postgres_api import PostgresApiLedger
from invoicing.ports import StoredInvoice, SubscriptionRecord


class PostgresInvoiceDocuments:
    """Invoices, subscriptions and tenant profiles of a PostgreSQL ledger, each read tenant-scoped."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self.ledger = ledger
        self.api = PostgresApiLedger(ledger)

    def invoice(self, tenant_id: str, invoice_id: int) -> StoredInvoice | None:
        return self.api.invoice(tenant_id, invoice_id)

    def numbered(self, invoice_number: str, tenant_id: str | None) -> list[StoredInvoice]:
        where = t.invoices.c.invoice_number == invoice_number
        if tenant_id is not None:
            where = and_(where, t.invoices.c.tenant_id == tenant_id)
        return self.api._invoices(where, 100)

    def subscription(self, tenant_id: str, subscription_id: str) -> SubscriptionRecord | None:
        with self.ledger.session() as session:
            record = session.get_subscription(subscription_id)
        return record if record is not None and record.subscription.tenant_id == tenant_id else None

    def profile(self, tenant_id: str) -> TenantProfile | None:
        profiles = t.tenant_profiles
        with self.ledger.engine.connect() as connection:
            row = connection.execute(select(profiles).where(profiles.c.tenant_id == tenant_id)).first()
        if row is None:
            return None
        return TenantProfile(row.tenant_id, row.name, row.address, row.tax_id, row.locale, row.template)

    def save_profile(self, profile: TenantProfile) -> None:
        values = {
            "name": profile.name,
            "address": profile.address,
            "tax_id": profile.tax_id,
            "locale": profile.locale,
            "template": profile.template,
        }
        statement = insert(t.tenant_profiles).values(tenant_id=profile.tenant_id, **values)
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id"], set_={**values, "updated_at": statement.excluded.updated_at}
        )
        with self.ledger.engine.begin() as connection:
            connection.execute(statement)
