"""Alembic environment of the ledger: online migrations only, against the configured URL.

Processes that start together (workers, a sink, the CLI) may all migrate at once: a transaction-
scoped advisory lock makes them take turns, and each reads the schema version only once it holds
the lock, so every one but the first finds nothing to do. PostgreSQL DDL is transactional, so a
failed migration leaves the schema as it was."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from invoicing.ledger.tables import metadata

MIGRATION_LOCK = 0x1ED6E4  # an arbitrary key of pg_advisory_xact_lock, the ledger's own

url = context.config.get_main_option("sqlalchemy.url")
assert url, "set sqlalchemy.url (invoicing.ledger.postgres.migrate does)"
engine = create_engine(url, poolclass=pool.NullPool)
try:
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=False)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
finally:
    engine.dispose()
