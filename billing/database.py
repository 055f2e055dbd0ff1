"""Where the ledger's PostgreSQL is: a server named by ``DATABASE_URL``, else the embedded server
under a data directory. No ClickHouse client is imported here, so the ledger-only commands
(``billing relay``, ``billing catalog``) start without paying for one."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from invoicing.ledger.embedded import embedded_database_url


def ledger_url(data_dir: Path) -> str:
    """DATABASE_URL, else the embedded PostgreSQL under ``data_dir/postgres`` (started if needed)."""
    return os.environ.get("DATABASE_URL") or embedded_database_url(data_dir / "postgres")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for printing (nothing prints a password)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def ledger_engine(data_dir: Path, pool_size: int = 5) -> Any:
    """An engine on the migrated ledger (``ledger_url``); an unreachable server is one line on
    stderr and exit status 1."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from invoicing.ledger.postgres import migrate

    url = ledger_url(data_dir)
    try:
        migrate(url)
    except OperationalError as error:
        reason = str(error.orig).splitlines()[0] if error.orig is not None else str(error)
        print(f"error: the ledger's PostgreSQL does not answer: {reason}", file=sys.stderr)
        raise SystemExit(1) from None
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size)
