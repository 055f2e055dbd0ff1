"""``smallbiznis.billing.v1.BillingService`` reads in ``billing serve``: a subscription's billing
periods from its calendar (``open_cycle``, ``close_due``: the periods the loop closes), marked
INVOICED with the ledger's invoice id once finalized, and its prepaid credit balance.

The calendar is walked from the start on the subscription's current plan, so, as for a dry-run
invoice, a subscription changed since it was created is FAILED_PRECONDITION (the ledger does not
record where a plan change or cancel cut its periods). A period's id is
``<subscription_id>@<period_start RFC 3339>``; ``created_at``/``updated_at`` are not filled.
Not served: ``OnSubscriptionCreated`` and ``RecordUsage`` (the seed's fast path: CreateSubscription
and IngestUsage do that work), ``GetTrialStatus`` (what is left of a trial balance is not kept).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc

from billing.api import wire
from billing.api.generate import MAX_PERIODS, unchanged
from billing.api.owned import owned_subscription
from billing.api.paging import decode_token, encode_token, page_size
from invoicing.engine.render import rfc3339
from invoicing.engine.subscriptions import close_due, open_cycle
from invoicing.ports import ApiLedger, Ledger, SubscriptionRecord
from rating.catalog import Plan
from rating.periods import Period, epoch_ms
from schemas.generated.smallbiznis.billing.v1 import billing_pb2, billing_pb2_grpc

OPEN, CLOSED, INVOICED = (
    billing_pb2.BILLING_PERIOD_STATUS_OPEN,
    billing_pb2.BILLING_PERIOD_STATUS_CLOSED,
    billing_pb2.BILLING_PERIOD_STATUS_INVOICED,
)


def periods(record: SubscriptionRecord, plan: Plan, now: datetime) -> list[tuple[Period, bool]]:
    """(period, still open) from the first to the one holding ``now`` (none before the start)."""
    cycle, out = open_cycle(record.subscription, plan), []
    for _ in range(MAX_PERIODS):
        if cycle.period is None or cycle.period.start > now:
            break
        if cycle.period.end > now:
            out.append((cycle.period, True))
            break
        closed, cycle = close_due(cycle)
        out.append((closed.period, False))
    return out


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, ledger: Ledger, api: ApiLedger, now: Callable[[], datetime]) -> None:
        self.ledger, self.api, self.now = ledger, api, now

    def _subscription(self, context: Any, subscription_id: str) -> tuple[SubscriptionRecord, Plan]:
        owned = owned_subscription(context, self.ledger, wire.tenant(context), subscription_id)
        return owned.record, owned.plan

    def _messages(
        self, record: SubscriptionRecord, found: list[tuple[Period, bool]]
    ) -> list[billing_pb2.BillingPeriod]:
        invoiced, after = {}, None
        while page := self.api.invoices(record.subscription.tenant_id, record.id, None, after, 500):
            invoiced.update({stored.invoice.period.start: str(stored.id) for stored in page})
            after = page[-1].id
        out = []
        for period, is_open in found:
            invoice_id = invoiced.get(period.start, "")
            out.append(
                billing_pb2.BillingPeriod(
                    id=f"{record.id}@{rfc3339(period.start)}",
                    subscription_id=record.id,
                    period_start=wire.timestamp(period.start),
                    period_end=wire.timestamp(period.end),
                    status=INVOICED if invoice_id else OPEN if is_open else CLOSED,
                    invoice_id=invoice_id,
                )
            )
        return out

    def GetCurrentBillingPeriod(
        self, request: billing_pb2.GetCurrentBillingPeriodRequest, context: Any
    ) -> billing_pb2.GetCurrentBillingPeriodResponse:
        """The period holding now; FAILED_PRECONDITION before the start or once billing ended."""
        record, plan = self._subscription(context, request.subscription_id)
        unchanged(context, record)
        found = [p for p in periods(record, plan, self.now()) if p[1]]
        if not found:
            wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, "subscription_id: no billing period holds now")
        return billing_pb2.GetCurrentBillingPeriodResponse(billing_period=self._messages(record, found)[0])

    def ListBillingPeriods(
        self, request: billing_pb2.ListBillingPeriodsRequest, context: Any
    ) -> billing_pb2.ListBillingPeriodsResponse:
        """Every period from the first to the current one, by start."""
        record, plan = self._subscription(context, request.subscription_id)
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (int,))
        unchanged(context, record)
        found = [p for p in periods(record, plan, self.now()) if after is None or epoch_ms(p[0].start) > int(after[0])]
        token = encode_token((epoch_ms(found[limit - 1][0].start),)) if len(found) > limit else ""
        return billing_pb2.ListBillingPeriodsResponse(
            billing_periods=self._messages(record, found[:limit]), next_page_token=token
        )

    def GetBalance(self, request: billing_pb2.GetBalanceRequest, context: Any) -> billing_pb2.GetBalanceResponse:
        """The prepaid credit (BALANCE notes) not yet applied to invoices; ``trial_balance`` is not filled."""
        record, plan = self._subscription(context, request.subscription_id)
        with self.ledger.session() as session:
            credit = session.credit_balance(record.id, plan.currency_code)
        return billing_pb2.GetBalanceResponse(
            balance=billing_pb2.Balance(subscription_id=record.id, credit_balance=wire.money(credit))
        )

    def GetTrialStatus(
        self, request: billing_pb2.GetTrialStatusRequest, context: Any
    ) -> billing_pb2.GetTrialStatusResponse:
        wire.tenant(context)
        wire.abort(
            context, grpc.StatusCode.UNIMPLEMENTED, "GetTrialStatus: what is left of a trial balance is not kept"
        )

    def OnSubscriptionCreated(
        self, request: billing_pb2.OnSubscriptionCreatedRequest, context: Any
    ) -> billing_pb2.OnSubscriptionCreatedResponse:
        wire.tenant(context)
        wire.abort(context, grpc.StatusCode.UNIMPLEMENTED, "OnSubscriptionCreated: CreateSubscription does this work")

    def RecordUsage(self, request: billing_pb2.RecordUsageRequest, context: Any) -> billing_pb2.RecordUsageResponse:
        wire.tenant(context)
        wire.abort(context, grpc.StatusCode.UNIMPLEMENTED, "RecordUsage: not served; use UsageService.IngestUsage")
