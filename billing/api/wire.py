"""Conversions shared by the served services: aborting with a status, tenants, instants and
money on the wire. Kept apart from the servicers so each of them stays a thin translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from billing.api.auth import caller_tenant
from billing.api.rating_service import instant, timestamp
from rating.errors import BillingError
from rating.money import Money
from schemas.generated.smallbiznis.common.v1 import money_pb2

__all__ = ["abort", "errors_as_status", "instant", "money", "optional_timestamp", "tenant", "timestamp"]


def abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this keeps the type checker honest


def tenant(context: Any, requested: str = "") -> str:
    """The caller's tenant (its key's); a request naming another tenant is refused."""
    own = caller_tenant()
    if own is None:  # the server always installs the interceptor: this is a wiring fault
        abort(context, grpc.StatusCode.UNAUTHENTICATED, "authorization: a valid 'Bearer KEY' is required")
    if requested and requested != own:
        abort(context, grpc.StatusCode.PERMISSION_DENIED, "tenant_id: the key speaks for another tenant")
    return own


@contextmanager
def errors_as_status(context: Any, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> Iterator[None]:
    """A domain error raised inside the block answers ``code`` with its message, which names the field."""
    try:
        yield
    except BillingError as error:
        abort(context, code, str(error))


def money(amount: Money) -> money_pb2.Money:
    return money_pb2.Money(units=amount.amount, currency_code=amount.currency)


def optional_timestamp(value: datetime | None) -> Timestamp | None:
    return None if value is None else timestamp(value)
