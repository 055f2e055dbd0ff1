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

The session is built from one part per concern of the LedgerSession port, on the transaction
state they share (postgres_session.py): postgres_invoices.py, postgres_credits.py,
postgres_billed.py and postgres_catalog.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib.resources import files
from typing import Any

from sqlalchemy import Engine, select

from invoicing.ledger.postgres_billed import PostgresBilledUsageSession
from invoicing.ledger.postgres_catalog import PostgresCatalogSession
from invoicing.ledger.postgres_credits import PostgresCreditSession
from invoicing.ledger.postgres_invoices import PostgresInvoiceSession
from invoicing.ledger.postgres_session import driver
from invoicing.ledger.postgres_writes import Batch

__all__ = ["PostgresLedger", "PostgresLedgerSession", "migrate"]


class PostgresLedgerSession(
    PostgresInvoiceSession, PostgresCreditSession, PostgresBilledUsageSession, PostgresCatalogSession
):
    """The LedgerSession port: one part per concern of the port, on one shared transaction
    (postgres_session.py)."""


class _OpenBatch(threading.local):
    """The batch this thread has open, if any."""

    batch: Batch | None = None


class PostgresLedger:
    """The Ledger port on a SQLAlchemy engine (``postgresql+psycopg://…``) migrated by :func:`migrate`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = _OpenBatch()

    def check_reachable(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(select(1))

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
                    batch.read_ahead(driver(connection), periods)
                yield
                if batch.failed is not None:
                    raise RuntimeError("the ledger batch failed and rolls back") from batch.failed
                batch.writes.flush(driver(connection))
            finally:
                self._local.batch = None


# -- migrations ----------------------------------------------------------------------------------


_MIGRATING = threading.Lock()


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``), or to
    ``revision``, up or down (a migration's test); idempotent and safe to run from several
    processes at once (they take turns, see migrations/env.py)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("invoicing.ledger").joinpath("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolates %
    with _MIGRATING:  # Alembic's context and op are module globals: one migration per process at a time
        if revision != "head" and _stored_above(config, url, revision):
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _stored_above(config: Any, url: str, revision: str) -> bool:
    """Whether the database's schema is newer than ``revision`` (so reaching it means going down)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    if current is None or current == revision:
        return False
    below = ScriptDirectory.from_config(config).iterate_revisions(current, "base")
    return revision in {script.revision for script in below}
