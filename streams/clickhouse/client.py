"""ClickHouse clients: a server through ``CLICKHOUSE_URL``, or embedded chDB behind the same
clickhouse-connect interface, and the schema both share (schema.sql)."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from streams.clickhouse.ownership import own_directory

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

SESSION_SETTINGS: dict[str, Any] = {
    # chDB 26.9 turns async_insert on by default; an async insert acknowledges before the part is
    # written and ignores insert_deduplication_token unless async dedup is enabled, so the sink's
    # "written means durable and deduplicated" would silently not hold.
    "async_insert": 0,
    "insert_deduplicate": 1,
}


def database_name(name: str) -> str:
    """``name`` if it is a plain identifier, which is what lets it be written into SQL."""
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a valid ClickHouse database name: {name!r}")
    return name


def open_client(url: str | None, path: str) -> Client:
    """A server client for ``url`` (``http[s]://user:pass@host:8123/db``), else embedded chDB
    persisting under ``path`` (one chDB path per process; see clickhouse-connect's ChdbClient)."""
    if url:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        return clickhouse_connect.get_client(
            host=parts.hostname or "localhost",
            port=parts.port or (8443 if secure else 8123),
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/") or None,
            secure=secure,
            settings=SESSION_SETTINGS,
            # totals() binds thousands of spans as array parameters: in the body, not the URL
            form_encode_query_params=True,
        )
    own_directory(path)
    return clickhouse_connect.get_client(interface="chdb", path=path, settings=SESSION_SETTINGS)


def schema_statements(database: str) -> list[str]:
    """The statements of schema.sql for ``database``, comments dropped."""
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("--"))
    sql = "\n".join(lines).replace("{db}", database_name(database))
    return [statement.strip() for statement in sql.split(";") if statement.strip()]


def ensure_schema(client: Client, database: str = "billing") -> None:
    """Create the database and its tables when missing; safe to run on every start."""
    for statement in schema_statements(database):
        client.command(statement)
