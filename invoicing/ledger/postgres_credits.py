"""A subscription's credit in a PostgreSQL ledger session: balances read under an advisory lock
only when there is something to spend (see credit_balance)."""

from __future__ import annotations

from invoicing.engine.credit import CreditNote
from invoicing.ledger import tables as t
from invoicing.ledger.postgres_session import PostgresSessionBase
from invoicing.ledger.postgres_writes import BALANCE, CREDIT_LOCK, LOCK_CREDIT
from rating.errors import InvalidValue
from rating.money import Money


class PostgresCreditSession(PostgresSessionBase):
    """The CreditSession port."""

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

    def add_credit_note(self, tenant_id: str, note: CreditNote) -> None:
        self._open_savepoint()
        self._unlocked_balances.pop(note.subscription_id, None)
        self.db.execute(
            t.credit_notes.insert().values(
                tenant_id=tenant_id,
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
