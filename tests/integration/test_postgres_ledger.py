"""The ledger on a real PostgreSQL: migrations match the tables, and concurrent finalizations of
one tenant number their invoices without a gap or a duplicate."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from invoicing.ledger.postgres import PostgresLedger, migrate
from invoicing.ledger.tables import metadata

pytestmark = pytest.mark.integration


def test_migrations_create_exactly_the_tables_and_rerun_as_a_no_op(pg_url: str) -> None:
    migrate(pg_url)  # the fixture migrated once already
    engine = create_engine(pg_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert diff == []


def test_concurrent_numbering_has_no_gap_and_no_duplicate(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=8)
    ledger = PostgresLedger(engine)
    taken: list[int] = []
    lock = threading.Lock()

    def finalize_many(worker: int) -> None:
        for n in range(25):
            try:
                with ledger.session() as s:
                    number = s.next_invoice_sequence("t1")
                    if (worker + n) % 5 == 0:
                        raise RuntimeError("crash inside the transaction")
                with lock:
                    taken.append(number)
            except RuntimeError:
                pass

    threads = [threading.Thread(target=finalize_many, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert sorted(taken) == list(range(1, len(taken) + 1))
    assert len(taken) == 8 * 25 - 40
