"""``smallbiznis.rating.v1.RatingService`` over gRPC: the rating agent's running RatingResults.

``GetCurrentRating`` answers from memory with the running RatingResult the agent keeps per open
period (``RatingAgent.current``, re-rated on every sink write of the subscription's usage): no
store read per request, so its latency is the RPC's, not the usage store's.
``RateSubscription`` rates an arbitrary ``[period_start, period_end)`` through the callable the
server is given (``rate``); a server started without one answers UNIMPLEMENTED.

Conversion to the wire is exact (``schemas/proto/smallbiznis/rating/v1/rating.proto``): quantities
and unit prices are plain decimal strings (``format_decimal``: no exponent, no trailing zeros, the
same value), amounts are ``Money`` in integer minor units, the proration is the exact fraction as
text (``"1"``, ``"9/31"``), instants are ``Timestamp``\\s to the microsecond.

Threads. gRPC answers on its worker threads while the agent re-rates on its own. The server
relies on one rule of the agent: it publishes a result by *whole-value replacement* of the
subscription's dictionary entry (``current[id] = result``) with a ``RatingResult`` that is
immutable (a frozen dataclass of tuples) and complete before the assignment. A ``dict`` get or
set is atomic (the GIL in CPython; per-object locks in free-threaded builds), so a reader sees the
previous result or the new one, never a half-built one. Whoever changes the agent must keep that:
never mutate a stored result, never build one inside the dictionary, and never clear and refill
the dictionary (readers would see NOT_FOUND in between); drop entries with ``pop``. The server
never iterates the dictionary (iteration during a write raises in CPython), it only calls
``current(subscription_id)`` (e.g. ``agent.current.get``).

Health (``grpc.health.v1``, the overall service ``""`` and ``smallbiznis.rating.v1.RatingService``)
is SERVING while the server runs, NOT_SERVING once it stops; reflection lists both services.

Keys. A server given ``authenticate`` obeys ``billing serve``'s rule (billing/api/auth.py): a call
needs ``authorization: Bearer KEY`` (UNAUTHENTICATED otherwise) and sees only its key's tenant: a
subscription of another tenant, or one whose tenant is not known, answers NOT_FOUND like an
unknown one. Without ``authenticate`` (tests, the in-process loop) every caller sees everything.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from billing.api.auth import Authenticate, TenantAuth, caller_tenant
from invoicing.engine.subscriptions import BillingCycle
from invoicing.engine.terms import BillingTerms
from invoicing.ports import Ledger, UsageReader
from invoicing.service import InvoiceService
from rating.errors import BillingError
from rating.numbers import format_decimal
from rating.periods import EPOCH, Period
from rating.rate import RatingResult, RatingResultItem
from schemas.generated.smallbiznis.common.v1 import money_pb2
from schemas.generated.smallbiznis.rating.v1 import rating_pb2, rating_pb2_grpc

SERVICE_NAME: str = rating_pb2.DESCRIPTOR.services_by_name["RatingService"].full_name
"""``smallbiznis.rating.v1.RatingService``: its health status and reflection name."""

CurrentRating = Callable[[str], RatingResult | None]
"""The running result of a subscription's open period, None when it has none (``agent.current.get``)."""
TenantOf = Callable[[str], str | None]
"""The tenant of a subscription (a RatingResult carries none); None or unknown leaves it empty."""
RatePeriod = Callable[[str, Period], RatingResult | None]
"""The RatingResult of a subscription over a period; None for an unknown subscription; raises a
``BillingError`` naming the field for a period it cannot rate."""


# -- conversion -------------------------------------------------------------------------------------


def timestamp(instant: datetime) -> Timestamp:
    """An aware instant as a Timestamp, exact to the microsecond (no float on the way)."""
    if instant.tzinfo is None:
        raise ValueError(f"{instant.isoformat()} carries no timezone")
    delta = instant - EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def instant(value: Timestamp, field: str) -> datetime:
    """A request's Timestamp as an aware UTC instant; finer than a microsecond is an error."""
    if value.nanos % 1000:
        raise BillingError(field, f"{value.ToJsonString()} is finer than a microsecond")
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise BillingError(field, f"not a valid instant: {error}") from None


def rating_item_message(item: RatingResultItem) -> rating_pb2.RatingResultItem:
    message = rating_pb2.RatingResultItem(
        metric_code=item.metric_code,
        quantity=format_decimal(item.quantity),
        amount=money_pb2.Money(units=item.amount.amount, currency_code=item.amount.currency),
        currency_code=item.currency_code,
        metadata=item.metadata(),
    )
    if item.unit_price is not None:
        message.unit_price = format_decimal(item.unit_price)
    return message


def rating_result_message(result: RatingResult, tenant_id: str = "") -> rating_pb2.RatingResult:
    """The wire form of ``result`` (a RatingResult carries no tenant: the server is told it)."""
    return rating_pb2.RatingResult(
        subscription_id=result.subscription_id,
        items=[rating_item_message(item) for item in result.items],
        rated_at=timestamp(result.rated_at),
        period_start=timestamp(result.period.start),
        period_end=timestamp(result.period.end),
        tenant_id=tenant_id,
        plan_code=result.plan_code,
        plan_version=result.plan_version,
        proration=str(result.proration),
    )


class PeriodRater:
    """A rater for ``RateSubscription``: the subscription's usage in any ``[start, end)`` priced by
    the plan of its current billing cycle and its tenant's current terms, included units in full
    (proration 1), rated at ``now()``. Each call prices with an ``InvoiceService`` of its own (one
    keeps prefetched reads per instance), so nothing is shared with the agent but ``usage``, which
    must be safe to read from a server thread while the agent reads the store on its own."""

    def __init__(
        self,
        ledger: Ledger,
        usage: UsageReader,
        terms_of: Callable[[str], BillingTerms],
        cycle_of: Callable[[str], BillingCycle | None],
        now: Callable[[], datetime],
    ) -> None:
        self.ledger = ledger
        self.usage = usage
        self.terms_of = terms_of
        self.cycle_of = cycle_of
        self.now = now

    def __call__(self, subscription_id: str, period: Period) -> RatingResult | None:
        cycle = self.cycle_of(subscription_id)
        if cycle is None:
            return None
        pricing = InvoiceService(self.ledger, self.usage, self.terms_of(cycle.subscription.tenant_id))
        return pricing.rate(cycle.subscription, cycle.plan, period, Fraction(1), self.now())


# -- service ----------------------------------------------------------------------------------------


def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this keeps the type checker honest


class RatingServicer(rating_pb2_grpc.RatingServiceServicer):
    def __init__(
        self, current: CurrentRating, rate: RatePeriod | None = None, tenant_of: TenantOf | None = None
    ) -> None:
        self.current = current
        self.rate = rate
        self.tenant_of = tenant_of

    def _message(self, result: RatingResult) -> rating_pb2.RatingResult:
        tenant_id = self.tenant_of(result.subscription_id) if self.tenant_of is not None else None
        return rating_result_message(result, tenant_id or "")

    def _hidden(self, subscription_id: str) -> bool:
        """Whether an authenticated caller must not see the subscription (another tenant's, or
        one whose tenant this server cannot tell)."""
        caller = caller_tenant()
        if caller is None:
            return False
        return self.tenant_of is None or self.tenant_of(subscription_id) != caller

    def GetCurrentRating(
        self, request: rating_pb2.GetCurrentRatingRequest, context: Any
    ) -> rating_pb2.GetCurrentRatingResponse:
        subscription_id = request.subscription_id
        if not subscription_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id: must not be empty")
        result = self.current(subscription_id)  # one dict lookup: see the module's note on threads
        if result is None or self._hidden(subscription_id):
            _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"subscription {subscription_id!r} has no open period rated by this rating agent",
            )
        return rating_pb2.GetCurrentRatingResponse(result=self._message(result), as_of=timestamp(result.rated_at))

    def RateSubscription(
        self, request: rating_pb2.RateSubscriptionRequest, context: Any
    ) -> rating_pb2.RateSubscriptionResponse:
        if self.rate is None:
            _abort(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                "RateSubscription: this rating server was started without a rater for arbitrary periods; "
                "GetCurrentRating serves the open period's running result",
            )
        subscription_id = request.subscription_id
        if not subscription_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id: must not be empty")
        try:
            for name in ("period_start", "period_end"):
                if not request.HasField(name):
                    raise BillingError(name, "is required")
            start = instant(request.period_start, "period_start")
            end = instant(request.period_end, "period_end")
            if end <= start:
                raise BillingError("period_end", f"{end.isoformat()} is not after period_start {start.isoformat()}")
            result = None if self._hidden(subscription_id) else self.rate(subscription_id, Period(start, end))
        except BillingError as error:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if result is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"subscription {subscription_id!r} is not known to this rater")
        return rating_pb2.RateSubscriptionResponse(result=self._message(result))


class RatingServer:
    """A gRPC server for ``RatingService`` with health checking and reflection.

    ``current`` gives the running result of a subscription's open period (``agent.current.get``);
    ``rate`` rates arbitrary periods for ``RateSubscription`` (UNIMPLEMENTED without it, see
    ``PeriodRater``); ``tenant_of`` gives the ``tenant_id`` written into a subscription's results
    (empty without it); ``authenticate`` turns on API keys (see the module's note on keys)."""

    def __init__(
        self,
        current: CurrentRating,
        *,
        rate: RatePeriod | None = None,
        tenant_of: TenantOf | None = None,
        authenticate: Authenticate | None = None,
        max_workers: int = 4,
    ) -> None:
        self.servicer = RatingServicer(current, rate, tenant_of)
        self.health = health.HealthServicer()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rating-rpc"),
            interceptors=[] if authenticate is None else [TenantAuth(authenticate)],
            options=[("grpc.so_reuseport", 0)],  # a taken port fails instead of being silently shared
        )
        rating_pb2_grpc.add_RatingServiceServicer_to_server(self.servicer, self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        reflection.enable_server_reflection((SERVICE_NAME, health_name, reflection.SERVICE_NAME), self.server)
        self.port: int | None = None

    def start(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Listen on ``host:port`` (0: a free port; loopback unless told otherwise) and serve;
        returns the bound port."""
        bound = int(self.server.add_insecure_port(f"{host}:{port}"))
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        self.server.start()
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self.port = bound
        return bound

    def stop(self, grace: float | None = 1.0) -> None:
        """Report NOT_SERVING, then stop: in-flight calls get ``grace`` seconds to finish."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or ``timeout`` passes (False)."""
        return bool(self.server.wait_for_termination(timeout))

    def __enter__(self) -> RatingServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
