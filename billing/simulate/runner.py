"""Run a scenario on a test clock: events flow through the pipeline operators into a usage store,
periods close on the subscriptions' calendars, and the invoice service finalizes invoices.

At one instant the order is: events arrive, periods reach their end, due invoices finalize (in
subscription order), then actions apply. The same engine serves ``billing demo`` at scale.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from functools import partial
from typing import Any, Protocol

from billing.clock import TestClock
from billing.simulate.payments import SimulatedPayments
from billing.simulate.scenario import Action, Scenario, ScenarioEvent
from billing.usage_reader import StoreUsageReader
from invoicing.engine.credit import CreditNote
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.model import Invoice
from invoicing.engine.subscriptions import (
    BillingCycle,
    ClosedPeriod,
    cancel,
    change_plan,
    close_due,
    end_trial,
    late_usage_period,
    open_cycle,
)
from invoicing.engine.terms import BillingTerms
from invoicing.engine.trials import trial_used_up_at
from invoicing.ports import Ledger
from invoicing.service import InvoiceService
from rating.errors import BillingError
from rating.money import Money, to_minor
from rating.periods import Period, epoch_ms, from_epoch_ms
from rating.rate import RatingResult
from streams.inprocess import InProcessPipeline, PipelineStats
from streams.kafka import messages
from streams.memory import MemoryDeadLetters
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent, UsageRecord
from streams.operators.validate import SubscriptionRef
from streams.ports import DeadLetter, DeadLetterSink, UsageStore

# Kinds of timeline entries, in the order they run at one instant.
ARRIVAL, PERIOD_END, FINALIZE, ACTION, PAYMENT = range(5)


class UsageDriver(Protocol):
    """Where the scenario's events go: the operators in this process, or Kafka and its workers.
    After ``flush`` every event processed so far is in the usage store and its dead letters are
    published; accepted records have been handed to the simulation's ``accepted``."""

    stats: PipelineStats

    def process(self, event: UsageEvent) -> object: ...
    def flush(self) -> None: ...


class Finalizer(Protocol):
    """Who turns a closed period into its invoice: the invoice service here, or the rating agent
    and the invoice worker over Kafka. ``InvoiceService`` is one as it is."""

    def prefetch(self, closing: Collection[ClosedPeriod]) -> None: ...
    def close_period(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime] = ()
    ) -> Invoice: ...
    def close_late_usage(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime]
    ) -> Invoice | None:
        """The standalone adjustment invoice of an ended subscription (``closed.is_adjustment``);
        None when no late period's usage changed."""
        ...


@dataclass
class SimulationResult:
    invoices: list[Invoice]
    dead_letters: list[DeadLetter]
    stats: PipelineStats
    cycles: dict[str, BillingCycle]
    unbilled_late_periods: dict[str, set[datetime]] = field(default_factory=dict)
    """Per subscription, the starts of finalized periods that accepted late usage no invoice has
    billed by ``run_until`` (the invoice that will bill it falls due later)."""
    current_usage: dict[str, RatingResult] = field(default_factory=dict)
    """Over Kafka: the rating agent's running RatingResult of each subscription's open period."""
    payment_attempts: list[dict[str, Any]] | None = None
    """With payment methods in the scenario: every charge attempt (billing/simulate/payments.py)."""
    subscription_statuses: dict[str, str] | None = None
    """With payment methods: the dunning status of each subscription at ``run_until``."""


def terms_of(scenario: Scenario) -> BillingTerms:
    """The scenario's tenant terms: its metrics, tax rules, coupons and payment terms."""
    metrics = {m.code: m for m in scenario.metrics}
    coupons = {c.code: c for c in scenario.coupons}
    payment_terms = scenario.payment_terms or PaymentTerms()
    return BillingTerms(scenario.tenant_id, metrics, scenario.tax_rules, coupons, payment_terms)


class Simulation:
    """One scenario's run; ``on_invoice`` sees each invoice as it is finalized."""

    def __init__(
        self,
        scenario: Scenario,
        store: UsageStore,
        ledger: Ledger,
        *,
        on_invoice: Callable[[Invoice], None] | None = None,
        on_event: Callable[[int], None] | None = None,
        batch_size: int = 100_000,
        driver: Callable[[Simulation], UsageDriver] | None = None,
        finalizer: Finalizer | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        self.scenario = scenario
        self.store = store
        self.ledger = ledger
        self.on_invoice = on_invoice
        self.on_event = on_event
        self.arrived = 0
        self.clock = TestClock(min((s.start_at for s in scenario.subscriptions), default=scenario.run_until))
        metrics = {m.code: m for m in scenario.metrics}
        self.order = {s.id: n for n, s in enumerate(scenario.subscriptions)}
        self.refs = {
            s.id: SubscriptionRef(s.id, s.tenant_id, s.timezone, epoch_ms(s.start_at)) for s in scenario.subscriptions
        }
        self.dead_letters = MemoryDeadLetters(forward=dead_letters)
        self.catalog = Catalog(metrics.get, self.refs.get)
        self.pipeline: UsageDriver = (
            driver(self)
            if driver is not None
            else InProcessPipeline(
                self.catalog,
                store,
                self.dead_letters,
                lambda: epoch_ms(self.clock.now()),
                tenant_of=lambda sub: self.refs[sub].tenant_id,
                on_accepted=self.accepted,
                batch_size=batch_size,
                original_of=None if dead_letters is None else messages.single_event,
            )
        )
        self.terms = terms_of(scenario)
        self.service = InvoiceService(ledger, StoreUsageReader(store), self.terms)
        self.finalizer: Finalizer = finalizer if finalizer is not None else self.service
        self.cycles: dict[str, BillingCycle] = {}
        self.finalized: dict[str, list[Period]] = defaultdict(list)
        self.late: dict[str, set[datetime]] = defaultdict(set)
        self.adjustments: set[tuple[str, datetime]] = set()
        """Standalone adjustment invoices scheduled (subscription, period start): one per cycle."""
        self.trial_checks: set[str] = set()
        self.trial_arrivals = False
        """An event arrived for a trial with a balance since the last check: the driver must flush
        (over Kafka, events are accepted, and ``accepted`` called, only when it flushes)."""
        self.invoices: list[Invoice] = []
        self._timeline: list[tuple[datetime, int, int, int, Any]] = []
        """Everything but arrivals, as a heap of (instant, kind, rank, sequence, payload)."""
        self._arrivals: list[tuple[datetime, int, int, int, Any]] = []
        """Arrivals in the same order, sorted once: a million pushes and pops through the heap
        took a tenth of ``billing demo``."""
        self._arrived_upto = 0
        self._seq = 0
        self.payments = SimulatedPayments(
            scenario.tenant_id,
            scenario.payment_terms or PaymentTerms(),
            scenario.simulates_payments,
            self.invoices,
            lambda at, payload: self._at(at, PAYMENT, 0, payload),
            self._cancel_now,
        )

    # --- timeline -----------------------------------------------------------------------------
    def _at(self, when: datetime, kind: int, rank: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._timeline, (when, kind, rank, self._seq, payload))

    def _peek(self) -> tuple[datetime, int, int, int, Any] | None:
        """The timeline's next entry: the earlier of the next arrival and the heap's top (never
        equal: arrivals are the only entries of their kind)."""
        arrival = self._arrivals[self._arrived_upto] if self._arrived_upto < len(self._arrivals) else None
        top = self._timeline[0] if self._timeline else None
        if arrival is None or (top is not None and top[:2] < arrival[:2]):
            return top
        return arrival

    def _pop(self) -> tuple[datetime, int, int, int, Any]:
        entry = self._peek()
        assert entry is not None
        if entry[1] == ARRIVAL:
            self._arrived_upto += 1
        else:
            heapq.heappop(self._timeline)
        return entry

    def _due(self, until: datetime) -> bool:
        entry = self._peek()
        return entry is not None and entry[0] <= until

    def _schedule_period_end(self, cycle: BillingCycle) -> None:
        if cycle.period is not None:
            self._at(cycle.period.end, PERIOD_END, self.order[cycle.subscription.id], (cycle.subscription.id, cycle))

    def _schedule_adjustment(self, cycle: BillingCycle, arrived_at: datetime) -> None:
        """An ended subscription has no next invoice: usage arriving for it may be late usage, billed
        on a standalone adjustment invoice at the next boundary of its cycle (if any turns out late)."""
        closed = late_usage_period(cycle, arrived_at, self.scenario.grace_period)
        if (closed.subscription.id, closed.period.start) not in self.adjustments:
            self.adjustments.add((closed.subscription.id, closed.period.start))
            self._schedule_finalize(closed)

    def _schedule_finalize(self, closed: ClosedPeriod | None) -> None:
        if closed is not None:
            due = closed.period.end + self.scenario.grace_period
            self._at(max(due, self.clock.now()), FINALIZE, self.order[closed.subscription.id], closed)

    # --- steps --------------------------------------------------------------------------------
    def accepted(self, record: UsageRecord) -> None:
        """Usage for a period already finalized is late: the next invoice carries its adjustment."""
        at = from_epoch_ms(record.recorded_at_ms)
        for period in self.finalized.get(record.subscription_id, ()):
            if period.contains(at):
                self.late[record.subscription_id].add(period.start)
                return
        cycle = self.cycles.get(record.subscription_id)
        if cycle is not None and cycle.is_trial and cycle.subscription.trial_balance is not None:
            self.trial_checks.add(record.subscription_id)

    def _arrive(self, event: ScenarioEvent) -> None:
        self.arrived += 1
        cycle = self.cycles.get(event.subscription_id)
        if cycle is not None and cycle.period is None:
            self._schedule_adjustment(cycle, self.clock.now())
        if cycle is not None and cycle.is_trial and cycle.subscription.trial_balance is not None:
            self.trial_arrivals = True
        if self.on_event is not None and self.arrived % 10_000 == 0:
            self.on_event(self.arrived)
        self.pipeline.process(event.usage_event())

    def _check_trials(self) -> None:
        """End a trial whose rated usage reached its balance, right after the event that reached it."""
        if self.trial_arrivals:
            self.pipeline.flush()
            self.trial_arrivals = False
        if not self.trial_checks:
            return
        for subscription_id in sorted(self.trial_checks, key=self.order.__getitem__):
            cycle = self.cycles[subscription_id]
            if not cycle.is_trial or cycle.period is None or cycle.subscription.trial_balance is None:
                continue
            latest = self._latest_usage_in(cycle)
            if latest is None:
                continue
            end = trial_used_up_at(cycle, latest, partial(self._rate_trial, cycle))
            if end is not None:
                closed, after = end_trial(cycle, end)
                if closed is not None:
                    self._replace_cycle(after)
                    self._schedule_finalize(closed)
        self.trial_checks.clear()

    def _rate_trial(self, cycle: BillingCycle, usage: Period) -> RatingResult:
        return self.service.rate(cycle.subscription, cycle.plan, usage, share=Fraction(0), at=self.clock.now())

    def _latest_usage_in(self, cycle: BillingCycle) -> datetime | None:
        assert cycle.period is not None
        latest = [
            e.recorded_at
            for e in self.scenario.events
            if e.subscription_id == cycle.subscription.id
            and cycle.period.contains(e.recorded_at)
            and e.arrives_at <= self.clock.now()
        ]
        return max(latest, default=None)

    def _replace_cycle(self, cycle: BillingCycle) -> None:
        self.cycles[cycle.subscription.id] = cycle
        self._schedule_period_end(cycle)

    def _period_end(self, subscription_id: str, scheduled: BillingCycle) -> None:
        cycle = self.cycles.get(subscription_id)
        if cycle is not scheduled or cycle.period is None:
            return  # superseded by a plan change, cancellation or early trial end
        closed, after = close_due(cycle)
        self._replace_cycle(after)
        self._schedule_finalize(closed)

    def _finalize(self, closed: ClosedPeriod) -> None:
        self.pipeline.flush()
        subscription_id = closed.subscription.id
        late = self.late.pop(subscription_id, set())
        if closed.is_adjustment:
            if not late:
                return  # the usage was not late (a duplicate, rejected, after the end)
            adjustment = self.finalizer.close_late_usage(closed, self.clock.now(), late)
            if adjustment is None:
                return
            invoice = adjustment
        else:
            invoice = self.finalizer.close_period(closed, self.clock.now(), late)
            self.finalized[subscription_id].append(closed.period)
        self.invoices.append(invoice)
        if self.on_invoice is not None:
            self.on_invoice(invoice)
        self.payments.finalized(len(self.invoices) - 1, self.clock.now())

    def _cancel_now(self, subscription_id: str, at: datetime) -> None:
        """Dunning's cancellation: immediate, its partial period invoiced."""
        cycle = self.cycles[subscription_id]
        if cycle.period is None:
            return
        closed, after = cancel(cycle, at, at_period_end=False)
        self._replace_cycle(after)
        self._schedule_finalize(closed)

    def _act(self, action: Action) -> None:
        cycle = self.cycles[action.subscription_id]
        if action.type == "credit_note":
            assert action.amount is not None
            currency = cycle.plan.currency_code
            amount = Money(to_minor(action.amount, currency), currency)
            note = CreditNote(action.subscription_id, action.credit_type, amount, action.at, action.reason)
            self.service.add_credit_note(self.refs[action.subscription_id].tenant_id, note)
            return
        if action.type == "attach_payment_method":
            assert action.token is not None
            self.payments.attach(action.subscription_id, action.token, action.at)
            return
        if cycle.period is None:
            return  # already canceled or expired: nothing left to change
        if action.type == "change_plan":
            assert action.plan_code is not None
            closed, after = change_plan(cycle, self.scenario.plan(action.plan_code), action.at)
        else:
            closed, after = cancel(cycle, action.at, action.at_period_end)
        self._replace_cycle(after)
        self._schedule_finalize(closed)
        if closed is None and after.period is None and self.late.get(action.subscription_id):
            self._schedule_adjustment(after, action.at)  # ended at a period's start: no last invoice

    # --- run ----------------------------------------------------------------------------------
    def _drain(self, until: datetime) -> None:
        """Process the timeline up to ``until``, in instant order."""
        while self._due(until):
            when, kind, rank, _, payload = self._pop()
            if when > self.clock.now():
                self._check_trials()
                self.clock.advance_to(when)
            if kind == ARRIVAL:
                self._arrive(payload)
            elif kind == PERIOD_END:
                self._check_trials()
                self._period_end(*payload)
            elif kind == FINALIZE:
                closing = [payload]
                while (following := self._peek()) is not None and following[:2] == (when, FINALIZE):
                    closing.append(self._pop()[4])
                self.pipeline.flush()
                regular = [c for c in closing if not c.is_adjustment]
                if regular:  # an adjustment invoice rates no usage of its own
                    self.finalizer.prefetch(regular)
                for closed in closing:
                    self._finalize(closed)
            elif kind == PAYMENT:
                self.payments.run(payload, when)
            else:
                try:
                    self._act(payload)
                except BillingError as error:  # e.g. outside the open period: name the action
                    raise error.at(f"actions[{rank}]") from None

    def run(self) -> SimulationResult:
        for subscription in self.scenario.subscriptions:
            self._replace_cycle(open_cycle(subscription, self.scenario.plan(subscription.plan_code)))
        events = self.scenario.events
        self._arrivals = sorted((event.arrives_at, ARRIVAL, n, 0, event) for n, event in enumerate(events))
        for n, action in enumerate(self.scenario.actions):
            self._at(action.at, ACTION, n, action)
        until = self.scenario.run_until
        while True:
            self._drain(until)
            self._check_trials()  # may schedule the invoice of a trial that just ended
            if not self._due(until):
                break
        self.pipeline.flush()
        if self.on_event is not None:
            self.on_event(self.arrived)
        unbilled = {k: v for k, v in self.late.items() if v}
        result = SimulationResult(self.invoices, self.dead_letters.letters, self.pipeline.stats, self.cycles, unbilled)
        if self.payments.enabled:
            result.payment_attempts = self.payments.attempts
            statuses = {s.id: self.payments.statuses.get(s.id, "ACTIVE") for s in self.scenario.subscriptions}
            result.subscription_statuses = statuses
        return result
