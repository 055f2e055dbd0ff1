"""``billing serve``'s reads of usage: the usage store shared by the RPC threads, and
``RatingService`` on the ledger's subscriptions.

One store client serves every RPC thread, so reads take turns (a lock): embedded chDB is one
session per process and clickhouse-connect's client is not documented as thread-safe. When the
store could not be opened (embedded chDB is owned by one process: a ``billing worker`` or
``billing rate`` on the same ``--data-dir`` holds it), serve still starts and the RPCs that read
usage answer UNAVAILABLE with the reason; a deployment running both points them at one ClickHouse
server (``CLICKHOUSE_URL``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NoReturn

import grpc

from billing.api import wire
from billing.api.rating_service import PeriodRater, RatingServicer
from invoicing.engine.subscriptions import BillingCycle, open_cycle
from invoicing.engine.terms import BillingTerms
from invoicing.ports import Ledger, UsageReader, UsageRequest
from schemas.generated.smallbiznis.rating.v1 import rating_pb2
from streams.ports import EventLog, StoredEvent


class SharedUsage:
    """The usage store's reads for many threads: one read at a time, quantities or events."""

    def __init__(self, reader: UsageReader, log: EventLog | None = None) -> None:
        self.reader = reader
        self.log = log
        self.lock = threading.Lock()

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        with self.lock:
            return self.reader.quantities(requests)

    def events(
        self,
        subscription_id: str,
        metric_code: str | None,
        start_ms: int,
        end_ms: int,
        after: tuple[int, str, str] | None,
        limit: int,
    ) -> list[StoredEvent]:
        assert self.log is not None
        with self.lock:
            return self.log.events(subscription_id, metric_code, start_ms, end_ms, after, limit)


def unavailable(context: Any, problem: str) -> NoReturn:
    wire.abort(
        context,
        grpc.StatusCode.UNAVAILABLE,
        f"the usage store is not open in this server ({problem}); embedded chDB belongs to one process: "
        "point billing serve and the loop at one ClickHouse server with CLICKHOUSE_URL",
    )


class LedgerCalendar:
    """A subscription's tenant, plan and terms as the ledger holds them now."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def tenant_of(self, subscription_id: str) -> str | None:
        with self.ledger.session() as session:
            record = session.get_subscription(subscription_id)
        return None if record is None else record.subscription.tenant_id

    def cycle_of(self, subscription_id: str) -> BillingCycle | None:
        """The subscription on its current plan version (its first cycle: the rater reads only the
        subscription and the plan from it)."""
        with self.ledger.session() as session:
            record = session.get_subscription(subscription_id)
            if record is None:
                return None
            subscription = record.subscription
            plan = session.get_plan(subscription.tenant_id, subscription.plan_code, record.plan_version)
        return None if plan is None else open_cycle(subscription, plan)

    def terms_of(self, tenant_id: str) -> BillingTerms:
        with self.ledger.session() as session:
            record = session.get_terms(tenant_id)
        return BillingTerms(tenant_id, {}) if record is None else record.terms


class ServedRating(RatingServicer):
    """``RatingService`` in ``billing serve``: ``RateSubscription`` reads the usage store; the
    running result of ``GetCurrentRating`` lives in the rating agent's memory, not here."""

    def __init__(self, ledger: Ledger, usage: UsageReader | None, problem: str, now: Callable[[], datetime]) -> None:
        calendar = LedgerCalendar(ledger)
        rate = None if usage is None else PeriodRater(ledger, usage, calendar.terms_of, calendar.cycle_of, now)
        super().__init__(lambda _: None, rate, calendar.tenant_of)
        self.problem = problem

    def RateSubscription(
        self, request: rating_pb2.RateSubscriptionRequest, context: Any
    ) -> rating_pb2.RateSubscriptionResponse:
        wire.tenant(context)
        if self.rate is None:
            unavailable(context, self.problem)
        return super().RateSubscription(request, context)

    def GetCurrentRating(
        self, request: rating_pb2.GetCurrentRatingRequest, context: Any
    ) -> rating_pb2.GetCurrentRatingResponse:
        wire.tenant(context)
        wire.abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            "GetCurrentRating: the running result lives in the rating agent; ask billing rate --grpc-port, "
            "or RateSubscription for any period",
        )
