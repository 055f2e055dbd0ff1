"""``billing query clickhouse|postgres SQL``: ask either store a question, embedded or server,
without knowing how it was started; prints a table (or JSON lines with ``--json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def run_query(store: str, sql: str, data_dir: Path) -> tuple[list[str], list[Sequence[Any]]]:
    if store == "clickhouse":
        from streams.clickhouse.client import open_client

        client = open_client(os.environ.get("CLICKHOUSE_URL"), str(data_dir / "chdb"))
        try:
            result = client.query(sql)
            return list(result.column_names), list(result.result_rows)
        finally:
            client.close()
    from sqlalchemy import create_engine, text

    from billing.database import ledger_url

    engine = create_engine(ledger_url(data_dir))
    try:
        with engine.connect() as connection:
            cursor = connection.execute(text(sql))
            return list(cursor.keys()), [tuple(row) for row in cursor]
    finally:
        engine.dispose()


def print_result(columns: list[str], rows: list[Sequence[Any]], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    Console().print(table)
