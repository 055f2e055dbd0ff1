"""Alembic environment of the ledger: online migrations only, against the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from invoicing.ledger.tables import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url, "set sqlalchemy.url (invoicing.ledger.postgres.migrate does)"
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
