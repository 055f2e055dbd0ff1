"""What every part of a PostgreSQL ledger session shares: the transaction's connections, the
writes it defers (postgres_writes.py) and, inside a batch, the savepoint that makes its own work
undoable. The parts by concern (postgres_invoices.py, postgres_credits.py, postgres_billed.py,
postgres_catalog.py) build on it; postgres.py composes them into ``PostgresLedgerSession``."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy import Connection

from invoicing.ledger.postgres_writes import Batch, Mark, Writes
from invoicing.ports import OutboxMessage

INERROR = TransactionStatus.INERROR


def driver(connection: Connection) -> Any:
    """The psycopg connection under a SQLAlchemy one (statements on it join its transaction)."""
    return connection.connection.driver_connection


def decimal_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def utc_or_none(instant: datetime | None) -> datetime | None:
    return None if instant is None else instant.astimezone(UTC)


class PostgresSessionBase:
    """One transaction's state; the outbox lives here too, as every part may announce a change."""

    def __init__(self, connection: Connection, batch: Batch | None = None) -> None:
        self.db = connection
        self.pg = driver(connection)  # psycopg, in the same transaction
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

    # -- outbox ---------------------------------------------------------------------------------

    def add_outbox(self, message: OutboxMessage) -> None:
        self.writes.outbox.append(message)  # written, in order, before commit (flush)
