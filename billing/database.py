"""Where the ledger's PostgreSQL is: a server named by ``DATABASE_URL``, else the embedded server
under a data directory. No ClickHouse client is imported here, so the ledger-only commands
(``billing relay``, ``billing catalog``) start without paying for one."""

from __future__ import annotations

import os
from pathlib import Path
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
