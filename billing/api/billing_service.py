"""``smallbiznis.billing.v1.BillingService`` reads in ``billing serve``: a subscription's billing
periods from its revision history replayed through the rater's calendar (billing/api/history.py:
the periods the loop closes, cut where plan changes and cancels cut them, none after a cancel),
marked INVOICED with the ledger's invoice id once finalized, and its prepaid credit balance.

A period's id is ``<subscription_id>@<period_start RFC 3339>``; ``created_at``/``updated_at`` are
not filled.
The trial (``GetTrialStatus``, ``OnSubscriptionCreated``, ``RecordUsage``'s fast-path deduction)
is read from the ledger's subscription and priced from the usage store as the rater prices it
(billing/api/trial_usage.py): nothing about it is kept apart, so it cannot drift from the invoices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from typing import Any

import grpc

from billing.api import wire
from billing.api.history import subscription_periods
from billing.api.ingest import NO_BROKER, BrokerUnavailable, UsageInput, UsageRecorder
from billing.api.owned import Owned, owned_subscription
from billing.api.paging import decode_token, encode_token, page_size
from billing.api.trial_usage import ADDABLE, Pending, WithPending, usage_cost
from billing.api.usage_access import SharedUsage, unavailable
from invoicing.engine.render import rfc3339, rfc3339_exact
from invoicing.engine.subscriptions import cycle_at, open_cycle, trial_end
from invoicing.engine.terms import BillingTerms
from invoicing.ports import ApiLedger, Ledger, SubscriptionRecord, UsageReader
from rating.catalog import Plan
from rating.errors import InvalidValue
from rating.money import Money, to_minor
from rating.numbers import parse_decimal
from rating.periods import ONE_MS, Period, epoch_ms
from schemas.generated.smallbiznis.billing.v1 import billing_pb2, billing_pb2_grpc

OPEN, CLOSED, INVOICED = (
    billing_pb2.BILLING_PERIOD_STATUS_OPEN,
    billing_pb2.BILLING_PERIOD_STATUS_CLOSED,
    billing_pb2.BILLING_PERIOD_STATUS_INVOICED,
)


def periods(ledger: Ledger, subscription_id: str, now: datetime) -> list[tuple[Period, bool]]:
    """(period, still open) from the first to the one holding ``now`` (none before the start)."""
    return [(closed.period, is_open) for closed, is_open in subscription_periods(ledger, subscription_id, now)]


class StoreMissing(Exception):
    """The usage store is not open in this server."""


@dataclass(frozen=True, slots=True)
class TrialView:
    period: Period
    spent: int | None
    """What the trial's usage cost so far, in minor units (None without a balance)."""


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(
        self,
        ledger: Ledger,
        api: ApiLedger,
        now: Callable[[], datetime],
        usage: SharedUsage | None = None,
        problem: str = "no usage store was given",
        recorder: UsageRecorder | None = None,
    ) -> None:
        self.ledger, self.api, self.now = ledger, api, now
        self.usage, self.problem, self.recorder = usage, problem, recorder

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
        record, _ = self._subscription(context, request.subscription_id)
        found = [p for p in periods(self.ledger, record.id, self.now()) if p[1]]
        if not found:
            wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, "subscription_id: no billing period holds now")
        return billing_pb2.GetCurrentBillingPeriodResponse(billing_period=self._messages(record, found)[0])

    def ListBillingPeriods(
        self, request: billing_pb2.ListBillingPeriodsRequest, context: Any
    ) -> billing_pb2.ListBillingPeriodsResponse:
        """Every period from the first to the current one, by start."""
        record, _ = self._subscription(context, request.subscription_id)
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (int,))
        found = periods(self.ledger, record.id, self.now())
        found = [p for p in found if after is None or epoch_ms(p[0].start) > int(after[0])]
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

    # -- the trial ------------------------------------------------------------------------------

    def _trial(self, record: SubscriptionRecord, plan: Plan, terms: BillingTerms, now: datetime) -> TrialView:
        """The trial at ``now``: its period, and what its usage up to then cost (the store is
        read only for a trial with a balance)."""
        sub, life = record.subscription, record.lifecycle
        end = life.trial_end_at or trial_end(sub)
        assert end is not None
        spent = None
        if sub.trial_balance is not None:
            if self.usage is None:
                raise StoreMissing
            upto = Period(sub.start_at, max(sub.start_at, min(now, end)))
            spent = usage_cost(self.ledger, self.usage, terms, sub, plan, upto, Fraction(0))
        return TrialView(Period(sub.start_at, end), spent)

    def _trial_status(self, context: Any, owned: Owned, now: datetime) -> billing_pb2.TrialStatus:
        record, plan = owned.record, owned.plan
        sub = record.subscription
        status = billing_pb2.TrialStatus(subscription_id=record.id, enabled=bool(sub.trial_days))
        if not sub.trial_days:
            return status
        try:
            trial = self._trial(record, self._plan_at(owned, sub.start_at), owned.terms, now)
        except StoreMissing:
            unavailable(context, self.problem)
        status.trial_start_at.CopyFrom(wire.timestamp(trial.period.start))
        status.trial_end_at.CopyFrom(wire.timestamp(trial.period.end))
        used_up = False
        if sub.trial_balance is not None and trial.spent is not None:
            balance = to_minor(sub.trial_balance, plan.currency_code)
            used_up = trial.spent >= balance
            status.trial_balance.CopyFrom(wire.money(Money(max(0, balance - trial.spent), plan.currency_code)))
        status.expired = now >= trial.period.end or used_up
        return status

    def _plan_at(self, owned: Owned, instant: datetime) -> Plan:
        """The plan version in force at ``instant`` (the previous one before a scheduled change)."""
        code, version = owned.record.plan_at(instant)
        if (code, version) == (owned.plan.code, owned.plan.version):
            return owned.plan
        with self.ledger.session() as session:
            plan = session.get_plan(owned.record.subscription.tenant_id, code, version)
        return owned.plan if plan is None else plan

    def GetTrialStatus(
        self, request: billing_pb2.GetTrialStatusRequest, context: Any
    ) -> billing_pb2.GetTrialStatusResponse:
        """The trial's period and what is left of its balance now: the balance less its usage
        priced as the rater prices it; expired once it ended or its usage reached the balance."""
        owned = owned_subscription(context, self.ledger, wire.tenant(context), request.subscription_id)
        return billing_pb2.GetTrialStatusResponse(trial_status=self._trial_status(context, owned, self.now()))

    def OnSubscriptionCreated(
        self, request: billing_pb2.OnSubscriptionCreatedRequest, context: Any
    ) -> billing_pb2.OnSubscriptionCreatedResponse:
        """The seed's follow-up of a creation: CreateSubscription stored the trial and its balance
        already, so this reads them back with the first period (the trial, when there is one);
        it changes nothing, so calling it again answers the same. ``trial_days``, when given, must
        be the subscription's."""
        owned = owned_subscription(context, self.ledger, wire.tenant(context), request.subscription_id)
        sub = owned.record.subscription
        if request.trial_days and request.trial_days != sub.trial_days:
            wire.abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"trial_days: subscription {sub.id!r} was created with {sub.trial_days}, not {request.trial_days}",
            )
        now = self.now()
        first = open_cycle(sub, self._plan_at(owned, sub.start_at)).period
        assert first is not None
        is_open = first.start <= now < first.end
        return billing_pb2.OnSubscriptionCreatedResponse(
            trial_status=self._trial_status(context, owned, now),
            billing_period=self._messages(owned.record, [(first, is_open)])[0],
        )

    def RecordUsage(self, request: billing_pb2.RecordUsageRequest, context: Any) -> billing_pb2.RecordUsageResponse:
        """The seed's fast path: the event goes to Kafka as IngestUsage sends it, and the answer
        says what it costs and what is left of the trial balance. While the trial runs and its
        usage before the event had not reached the balance, the event is covered by the trial
        (not billable), even when it uses the balance up: the trial then ends right after it, as
        the rater ends it. Otherwise it is billed in its period (priced with the period's included
        units in full, as the running result prices it)."""
        tenant = wire.tenant(context)
        owned = owned_subscription(context, self.ledger, tenant, request.subscription_id)
        record, terms = owned.record, owned.terms
        sub, life = record.subscription, record.lifecycle
        now = self.now()
        with wire.errors_as_status(context):
            if not request.idempotency_key:
                raise InvalidValue("idempotency_key", "is required: a retried call must count once")
            quantity = parse_decimal(request.quantity, "quantity")
            at = wire.instant(request.recorded_at, "recorded_at") if request.HasField("recorded_at") else now
            metric = terms.metrics.get(request.metric_code)
            if metric is None:
                raise InvalidValue("metric_code", f"tenant {tenant} has no metric {request.metric_code!r}")
        if metric.aggregation not in ADDABLE:
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"metric_code: {metric.code!r} aggregates by {metric.aggregation}; RecordUsage prices SUM, COUNT "
                "and MAX metrics (send it with UsageService.IngestUsage: it is priced once rated)",
            )
        if self.usage is None:
            unavailable(context, self.problem)
        if self.recorder is None:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, NO_BROKER)
        if at < sub.start_at or (life.cancel_at is not None and at >= life.cancel_at):
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"recorded_at: no billing period of subscription {sub.id!r} holds {rfc3339_exact(at)}",
            )
        plan = self._plan_at(owned, at)
        cycle = cycle_at(replace(sub, plan_code=plan.code), plan, life.anchor(sub, at), at)
        if cycle.period is None:
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"recorded_at: subscription {sub.id!r} has ended by {rfc3339_exact(at)}",
            )
        pending = Pending(sub.id, metric.code, quantity, at)
        stored = self._stored(sub.id, metric.code, at, request.idempotency_key)
        # the usage without and with the event: a replay of a stored one answers as it did
        without: UsageReader = WithPending(self.usage, pending, removed=True) if stored else self.usage
        added: UsageReader = self.usage if stored else WithPending(self.usage, pending)
        trial_end_at = life.trial_end_at or trial_end(sub)
        in_trial = cycle.is_trial and trial_end_at is not None and at < trial_end_at
        left = None
        if in_trial:
            upto = Period(cycle.period.start, min(at + ONE_MS, cycle.period.end))  # as trials.py rates it
            before = usage_cost(self.ledger, self.usage, terms, sub, plan, Period(upto.start, at), Fraction(0))
            after = usage_cost(self.ledger, added, terms, sub, plan, upto, Fraction(0))
            cost = after - usage_cost(self.ledger, without, terms, sub, plan, upto, Fraction(0))
            billable = False
            if sub.trial_balance is not None:
                balance = to_minor(sub.trial_balance, plan.currency_code)
                billable = before >= balance  # the trial had ended before this event
                left = max(0, balance - (before if billable else after))
        else:
            period = cycle.period
            cost = usage_cost(self.ledger, added, terms, sub, plan, period, Fraction(1)) - usage_cost(
                self.ledger, without, terms, sub, plan, period, Fraction(1)
            )
            billable = True
        event = UsageInput(
            "record",
            tenant,
            sub.id,
            metric.code,
            quantity,
            at,
            request.idempotency_key,
            dict(request.metadata),
            None,
        )
        try:
            with wire.errors_as_status(context):
                self.recorder.record([event])
        except BrokerUnavailable as error:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, f"{error}; {NO_BROKER}")
        currency = plan.currency_code
        response = billing_pb2.RecordUsageResponse(cost=wire.money(Money(cost, currency)), billable=billable)
        usage = billing_pb2.UsageRecord(
            id=request.idempotency_key,
            subscription_id=sub.id,
            metric_code=metric.code,
            period_id="" if in_trial else f"{sub.id}@{rfc3339(cycle.period.start)}",
            quantity=str(quantity),
            cost=wire.money(Money(cost, currency)),
            metadata=dict(request.metadata),
            created_at=wire.timestamp(at),
        )
        if left is not None:
            response.trial_balance_left.CopyFrom(wire.money(Money(left, currency)))
            usage.trial_balance_left.CopyFrom(wire.money(Money(left, currency)))
        response.record.CopyFrom(usage)
        return response

    def _stored(self, subscription_id: str, metric_code: str, at: datetime, key: str) -> bool:
        """Whether the store holds the event already (a replay of one the pipeline wrote)."""
        if self.usage is None or self.usage.log is None:
            return False
        start = epoch_ms(at)
        found = self.usage.events(subscription_id, metric_code, start, start + 1, None, 1000)
        return any(event.idempotency_key == key for event in found)
