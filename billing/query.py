"""``billing query clickhouse|postgres SQL``: ask either store a question, embedded or server,
without knowing how it was started; prints a table (or JSON lines with ``--json``).

Read-only unless ``--write``: one statement, in a read-only transaction, and on the embedded
PostgreSQL as the role ``billing_reader`` (``pg_read_all_data`` only), so neither a write nor a
superuser's ``COPY … TO PROGRAM`` can run; ClickHouse queries run with ``readonly = 1``. A
server of your own is queried as the role its URL names (``QUERY_DATABASE_URL``, else
``DATABASE_URL``): give it a read-only role there."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rating.errors import BillingError

READER = "billing_reader"
"""The embedded server's read-only role."""


class QueryFailed(BillingError):
    """The store refused the query; the message is the store's own first line."""


def run_query(store: str, sql: str, data_dir: Path, write: bool = False) -> tuple[list[str], list[Sequence[Any]]]:
    try:
        if store == "clickhouse":
            return _clickhouse(sql, data_dir, write)
        return _postgres(sql, data_dir, write)
    except BillingError:
        raise
    except Exception as error:  # the driver's error: its message names what the store refused
        if type(error).__module__.split(".")[0] not in {"clickhouse_connect", "psycopg", "sqlalchemy"}:
            raise
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise QueryFailed("sql", f"{store} refused it: {lines[0]}") from None


def _clickhouse(sql: str, data_dir: Path, write: bool) -> tuple[list[str], list[Sequence[Any]]]:
    from streams.clickhouse.client import open_client

    client = open_client(os.environ.get("CLICKHOUSE_URL"), str(data_dir / "chdb"))
    try:
        result = client.query(sql, settings=None if write else {"readonly": 1})
        return list(result.column_names), list(result.result_rows)
    finally:
        client.close()


def _postgres(sql: str, data_dir: Path, write: bool) -> tuple[list[str], list[Sequence[Any]]]:
    from billing.database import ledger_url

    if write:
        from sqlalchemy import create_engine, text

        engine = create_engine(ledger_url(data_dir))
        try:
            with engine.begin() as connection:
                cursor = connection.execute(text(sql))
                if not cursor.returns_rows:
                    return [], []
                return list(cursor.keys()), [tuple(row) for row in cursor]
        finally:
            engine.dispose()
    import psycopg

    with psycopg.connect(_reader_conninfo(data_dir)) as connection:
        connection.read_only = True
        # prepare=True: the extended protocol, which takes exactly one statement ("…; COMMIT; …" is refused)
        answer = connection.execute(sql, prepare=True)
        if answer.description is None:
            return [], []
        return [column.name for column in answer.description], [tuple(row) for row in answer.fetchall()]


def _reader_conninfo(data_dir: Path) -> str:
    """A libpq URL for read-only queries: QUERY_DATABASE_URL, DATABASE_URL, else the embedded
    server as its read-only role (created on first use)."""
    url = os.environ.get("QUERY_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url is None:
        from invoicing.ledger.embedded import embedded_reader_url

        url = embedded_reader_url(data_dir / "postgres", READER)
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def print_result(columns: list[str], rows: list[Sequence[Any]], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    Console().print(table)
