"""Billed usage in a PostgreSQL ledger session: recorded as a deferred write, read after a flush
of this subscription's deferred rows."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select

from invoicing.ledger import tables as t
from invoicing.ledger.postgres_session import PostgresSessionBase, utc
from invoicing.ports import BilledUsage
from rating.money import Money


class PostgresBilledUsageSession(PostgresSessionBase):
    """The BilledUsageSession port."""

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
                utc(row.period_start),
                utc(row.period_end),
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
