"""API keys in the ledger's PostgreSQL (table ``api_keys``, migration 0004). The store keeps a key's
tenant, name and the hash of its secret, never the secret; making and checking keys is
billing/api/keys.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, func, select

from invoicing.ledger import tables as t
from invoicing.ledger.postgres_session import utc, utc_or_none


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: who it speaks for, and whether it still does (``revoked_at`` None)."""

    key_id: str
    tenant_id: str
    name: str
    secret_hash: bytes
    created_at: datetime
    revoked_at: datetime | None = None


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        tenant_id=row.tenant_id,
        name=row.name,
        secret_hash=bytes(row.secret_hash),
        created_at=utc(row.created_at),
        revoked_at=utc_or_none(row.revoked_at),
    )


class PostgresApiKeys:
    """The ``ApiKeyStore`` port (billing/api/keys.py) on a migrated ledger database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, key_id: str, tenant_id: str, name: str, secret_hash: bytes) -> ApiKey:
        statement = (
            t.api_keys.insert()
            .values(key_id=key_id, tenant_id=tenant_id, name=name, secret_hash=secret_hash)
            .returning(*t.api_keys.c)
        )
        with self.engine.begin() as connection:
            return _key(connection.execute(statement).one())

    def get(self, key_id: str) -> ApiKey | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
        return None if row is None else _key(row)

    def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant_id`` only, if given), oldest first."""
        query = select(t.api_keys).order_by(t.api_keys.c.created_at, t.api_keys.c.key_id)
        if tenant_id is not None:
            query = query.where(t.api_keys.c.tenant_id == tenant_id)
        with self.engine.connect() as connection:
            return [_key(row) for row in connection.execute(query)]

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke the key (a revoked key stays revoked at its first instant); None if unknown."""
        statement = (
            t.api_keys.update()
            .where(t.api_keys.c.key_id == key_id)
            .values(revoked_at=func.coalesce(t.api_keys.c.revoked_at, func.now()))
            .returning(*t.api_keys.c)
        )
        with self.engine.begin() as connection:
            row = connection.execute(statement).first()
        return None if row is None else _key(row)
