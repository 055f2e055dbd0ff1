"""Where the ledger's PostgreSQL is: a server named by ``DATABASE_URL``, else the embedded server
under a data directory. No ClickHouse client is imported here, so the ledger-only commands
(``billing relay``, ``billing catalog``) start without paying for one."""

from __future__ import annotations

import os
from pathlib import Path

from invoicing.ledger.embedded import embedded_database_url


def ledger_url(data_dir: Path) -> str:
    """DATABASE_URL, else the embedded PostgreSQL under ``data_dir/postgres`` (started if needed)."""
    return os.environ.get("DATABASE_URL") or embedded_database_url(data_dir / "postgres")
