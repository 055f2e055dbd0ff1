"""Wiring of the real stores: ClickHouse (a server via CLICKHOUSE_URL, else embedded chDB) and
PostgreSQL (a server via DATABASE_URL, else an embedded server from the pgserver wheel)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine

from billing.database import ledger_url, redact
from invoicing.ledger.postgres import PostgresLedger, migrate
from streams.clickhouse.client import ensure_schema, open_client
from streams.clickhouse.events import ClickHouseEventLog
from streams.clickhouse.store import ClickHouseDeadLetters, ClickHouseUsageStore

DATABASE = "billing"


def clickhouse_where(data_dir: Path) -> str:
    url = os.environ.get("CLICKHOUSE_URL")
    return redact(url) if url else f"chDB at {data_dir / 'chdb'}"


def open_usage_store(data_dir: Path) -> ClickHouseUsageStore:
    """The usage store, schema ensured. Embedded chDB locks ``data_dir/chdb`` for this process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    client = open_client(os.environ.get("CLICKHOUSE_URL"), str(data_dir / "chdb"))
    ensure_schema(client, DATABASE)
    return ClickHouseUsageStore(client, DATABASE)


def event_log(store: ClickHouseUsageStore) -> ClickHouseEventLog:
    """The stored events of ``store`` (``ListUsage``), on its client."""
    return ClickHouseEventLog(store.client, store.db)


@dataclass
class Stores:
    usage: ClickHouseUsageStore
    ledger: PostgresLedger
    engine: Engine
    clickhouse_where: str
    database_url: str

    @property
    def dead_letters(self) -> ClickHouseDeadLetters:
        """Rejected usage, kept in the usage store's ``dead_letters`` table."""
        return ClickHouseDeadLetters(self.usage.client, DATABASE)

    def close(self) -> None:
        self.usage.client.close()
        self.engine.dispose()


def open_stores(data_dir: Path) -> Stores:
    """Both stores, schemas migrated. Embedded data lives under ``data_dir``."""
    usage = open_usage_store(data_dir)
    url = ledger_url(data_dir)
    migrate(url)
    engine = create_engine(url)
    return Stores(usage, PostgresLedger(engine), engine, clickhouse_where(data_dir), url)
