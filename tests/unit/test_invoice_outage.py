"""Which ledger errors the invoice worker retries (an outage) and which it blames on the message
(dead-lettered): by the SQLSTATE PostgreSQL answered, not by the exception's class."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import exc

from invoicing.ledger.outage import is_outage, sqlstate


def wrapped(orig: BaseException, invalidated: bool = False) -> exc.DBAPIError:
    """As SQLAlchemy raises a driver error: wrapped, ``from`` the original."""
    error = exc.DBAPIError.instance("INSERT …", {}, orig, psycopg.Error, connection_invalidated=invalidated)
    error.__cause__ = orig
    return error


def caused(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def pipeline_aborted_after(first: BaseException) -> BaseException:
    aborted = errors.PipelineAborted("pipeline aborted")
    aborted.__context__ = first
    return aborted


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        # the server refused the statement: the message's fault, although psycopg calls most of
        # these OperationalError
        (errors.lookup("54000")("index row size 3032 exceeds btree version 4 maximum 2704"), False),
        (errors.lookup("22001")("value too long for type character(3)"), False),
        (errors.lookup("22003")("numeric field overflow"), False),
        (errors.lookup("23505")("duplicate key value violates unique constraint"), False),
        (errors.lookup("57014")("canceling statement due to statement timeout"), False),
        (errors.lookup("XX000")("internal error"), False),
        # PostgreSQL cannot work now, or the same work gets through when redone
        (errors.lookup("08006")("connection failure"), True),
        (errors.lookup("57P01")("terminating connection due to administrator command"), True),
        (errors.lookup("57P02")("crash shutdown"), True),
        (errors.lookup("57P03")("the database system is starting up"), True),
        (errors.lookup("53100")("could not extend file: No space left on device"), True),
        (errors.lookup("53300")("too many connections"), True),
        (errors.lookup("58030")("could not read block"), True),
        (errors.lookup("40P01")("deadlock detected"), True),
        (errors.lookup("40001")("could not serialize access"), True),
        # no answer from the server: the connection failed or was lost
        (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        # wrapped by SQLAlchemy, or by the ledger batch: the cause decides
        (wrapped(errors.lookup("54000")("index row size")), False),
        (wrapped(errors.lookup("57P01")("administrator command")), True),
        (wrapped(psycopg.OperationalError("connection refused")), True),
        (wrapped(psycopg.Error("lost"), invalidated=True), True),
        (exc.DisconnectionError("pool pre-ping failed"), True),
        (caused(RuntimeError("the ledger batch failed and rolls back"), errors.lookup("54000")("too long")), False),
        (caused(RuntimeError("the ledger batch failed and rolls back"), errors.lookup("08006")("lost")), True),
        (pipeline_aborted_after(errors.lookup("54000")("index row size")), False),
        (pipeline_aborted_after(psycopg.OperationalError("server closed the connection")), True),
        (errors.PipelineAborted("pipeline aborted"), False),
        (RuntimeError("not a database error"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_an_outage_is_told_from_a_refused_statement(error: BaseException, outage: bool) -> None:
    assert is_outage(error) is outage


def test_the_sqlstate_is_found_under_wrappers() -> None:
    assert sqlstate(wrapped(errors.lookup("54000")("index row size"))) == "54000"
    assert sqlstate(psycopg.OperationalError("connection refused")) is None
