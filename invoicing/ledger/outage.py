"""Which PostgreSQL errors are an outage (retry the same work) and which blame the statement.

Decided by the SQLSTATE the server answered, not by the exception class: psycopg raises many
refused statements (a value too long for an index, 54000) as ``OperationalError`` too."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import Error as PgError
from psycopg import InterfaceError as PgInterfaceError
from psycopg import OperationalError as PgOperationalError
from psycopg.errors import PipelineAborted
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "58"})
"""SQLSTATE classes that say PostgreSQL cannot do any work now, whatever the message: connection
exception, insufficient resources (disk full, out of memory, too many connections), system error."""
OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "55P03"})
"""Admin shutdown, crash shutdown, cannot connect now (the server is stopping or starting); and
serialization failure, deadlock and lock timeout, which the same work gets past when it is redone."""


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE PostgreSQL answered ``error`` (or what caused it) with, if it answered."""
    for current in _causes(error):
        if isinstance(current, PgError) and current.sqlstate is not None:
            return current.sqlstate
    return None


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) means PostgreSQL is unreachable, restarting or out of
    resources, or the connection was lost, so the same work is to be retried rather than blamed on
    the message. Decided by the SQLSTATE when the server answered one: a statement it refused
    (a value too long for an index, a constraint, bad data: classes 22, 23, 54…) is no outage,
    although psycopg raises many of those as OperationalError too."""
    for current in _causes(error):
        if isinstance(current, DisconnectionError | PoolTimeout):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, PgError):
            state = current.sqlstate
            if state is not None:
                return state[:2] in OUTAGE_SQLSTATE_CLASSES or state in OUTAGE_SQLSTATES
            if isinstance(current, PipelineAborted):  # the statement before it failed: that one decides
                continue
            # no answer from the server: the connection failed, was lost or is closed
            return isinstance(current, PgOperationalError | PgInterfaceError)
    return False


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what caused it (SQLAlchemy's wrapped driver error, ``raise … from``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__


def short_description(error: BaseException) -> str:
    """One line for logs and dead letters: the error's type, its SQLSTATE if any, its first line."""
    state = sqlstate(error)
    named = type(error).__name__ if state is None else f"{type(error).__name__} (SQLSTATE {state})"
    return f"{named}: {str(error).splitlines()[0][:200] if str(error) else ''}"
