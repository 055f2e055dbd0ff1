"""The ledger's outbox table as the relay reads it: the rows not published yet, marking rows
published, and the advisory lock that lets one relay per transactional id be active.

Errors are the database's (``sqlalchemy.exc.DBAPIError``): the relay decides whether to wait."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, Engine, Text, cast, func, select, text
from sqlalchemy.exc import DBAPIError

from invoicing.ledger import tables as t

RELAY_LOCK: Final = 0x0B0C5  # first key of the two-key advisory lock; the second is the lock name's hash


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    payload: bytes


class OutboxTable:
    """The ``outbox`` table on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def try_lock(self, name: str) -> Connection | None:
        """The connection holding the session-level advisory lock of ``name``, or None when
        another session holds it. The lock lives as long as that connection."""
        key = select(func.hashtext(name)).scalar_subquery()
        connection = self.engine.connect()
        try:
            got = connection.execute(select(func.pg_try_advisory_lock(RELAY_LOCK, key))).scalar_one()
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if got:
            return connection
        connection.close()
        return None

    @staticmethod
    def lock_alive(holder: Connection) -> bool:
        """Whether the lock's connection still answers (a server restart ends it, and the lock)."""
        try:
            holder.execute(text("SELECT 1"))
            holder.commit()
        except DBAPIError:
            return False
        return True

    @staticmethod
    def release(holder: Connection) -> None:
        with suppress(Exception):  # a closed connection has released its session locks already
            holder.close()

    def pending(self, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` unpublished rows, oldest id first."""
        query = (
            select(t.outbox.c.id, t.outbox.c.topic, t.outbox.c.key, cast(t.outbox.c.payload, Text).label("payload"))
            .where(t.outbox.c.published_at.is_(None))
            .order_by(t.outbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [OutboxRow(r.id, r.topic, r.key, r.payload.encode()) for r in connection.execute(query)]

    def mark_published(self, ids: Sequence[int]) -> int:
        """Set ``published_at`` on those of ``ids`` not marked yet; how many were."""
        statement = (
            t.outbox.update()
            .where(t.outbox.c.id.in_(ids), t.outbox.c.published_at.is_(None))
            .values(published_at=func.now())
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount
