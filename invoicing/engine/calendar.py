"""The billing calendar on any clock: which periods have closed, and which are due for invoicing.

A period closes at its end (or early, on a plan change or cancellation) and falls due for its
invoice a grace period later, so that usage recorded at its last instant still reaches it. The
calendar is pure: the rater (billing/rate/rater.py) feeds it subscriptions, changes and the wall
clock, and hands each due period to the rating agent. Its state is derived from two facts the
rater keeps durably — the changes it applied, each at its instant, and the end of the last period
it handed over per subscription — so a restarted rater replays them and gets the same periods.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction

from invoicing.engine.subscriptions import (
    BillingCycle,
    ClosedPeriod,
    Lifecycle,
    Subscription,
    cancel,
    change_plan,
    close_due,
    end_trial,
    late_usage_period,
    open_cycle,
)
from rating.catalog import Plan
from rating.periods import proration


@dataclass(frozen=True, slots=True)
class Change:
    """What a subscription became at ``at``: revision ``revision`` of its catalog record, on
    ``plan``; ``canceled`` ends it there. The first change of a subscription opens it.
    ``trial_ended``: not a catalog revision but the rater's finding that rated usage reached the
    trial balance; the trial closes at ``at`` (design section 4)."""

    at: datetime
    revision: int
    subscription: Subscription
    plan: Plan
    canceled: bool = False
    trial_ended: bool = False


class Calendar:
    """Billing cycles of many subscriptions; :meth:`due` returns the periods whose invoice is due."""

    def __init__(self, grace_period: timedelta = timedelta(0)) -> None:
        self.grace_period = grace_period
        self.cycles: dict[str, BillingCycle] = {}
        self.history: dict[str, list[Change]] = {}
        self.handed_over: dict[str, datetime] = {}
        """Per subscription, the end of the last period handed over: nothing ending at or before
        it is due again."""
        self.moved: set[str] = set()
        """Subscriptions whose open period changed (closed, opened, ended) since the caller last
        cleared this: their running result must be re-rated or dropped."""
        self._closed: list[tuple[datetime, str, int, ClosedPeriod]] = []
        self._ends: list[tuple[datetime, str]] = []
        self._late: list[tuple[datetime, str, int, ClosedPeriod]] = []
        """Per ended subscription, the next standalone adjustment invoice its cycle would reach."""
        self._seq = 0

    # -- changes ---------------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        """Open the subscription (its first change) or change it at ``change.at``: periods that
        ended before are closed first; a plan change or cancellation closes the open period there."""
        sub = change.subscription.id
        history = self.history.setdefault(sub, [])
        if history and change.revision <= history[-1].revision and not change.trial_ended:
            return  # seen already: the catalog redelivers, a replay repeats
        first = not history
        history.append(change)
        if first:
            if not change.canceled:  # one created canceled never bills
                self._replace(open_cycle(change.subscription, change.plan))
            return
        if sub not in self.cycles:
            return
        self.close_until(change.at, only=sub)
        cycle = self.cycles[sub]
        if cycle.period is None or not cycle.period.contains(change.at):
            return  # ended already (canceled, trial expired)
        if change.trial_ended:
            if not cycle.is_trial:
                return
            closed, after = end_trial(cycle, change.at)
        elif change.canceled:
            closed, after = cancel(cycle, change.at, at_period_end=False)
        elif (change.plan.code, change.plan.version) != (cycle.plan.code, cycle.plan.version):
            closed, after = change_plan(cycle, change.plan, change.at)
        else:  # another field changed (e.g. region or coupon): the next invoice reads it
            closed, after = None, replace(cycle, subscription=change.subscription)
        self._replace(after)
        if closed is not None:
            self._close(closed)

    def instant_of(self, subscription: Subscription, effective_at: datetime | None, read_at: datetime) -> datetime:
        """Where a revision read at ``read_at`` is applied: the start for the first one; else at
        ``effective_at`` (``read_at`` without one), never before the last change, nor before the
        open period's start (the calendar moved on between the request and the read)."""
        history = self.history.get(subscription.id)
        if not history:
            return subscription.start_at
        at = max(read_at if effective_at is None else effective_at, history[-1].at)
        cycle = self.cycles.get(subscription.id)
        if cycle is not None and cycle.period is not None and at < cycle.period.start:
            at = cycle.period.start
        return at

    def replay(self, history: Mapping[str, list[Change]], handed_over: Mapping[str, datetime]) -> None:
        """Rebuild from what the rater recorded (after a restart): the same changes at the same
        instants give the same periods; those handed over already are not due again."""
        self.handed_over.update(handed_over)
        for changes in history.values():
            for change in changes:
                self.apply(change)

    # -- the clock ---------------------------------------------------------------------------------
    def close_until(self, now: datetime, only: str | None = None) -> None:
        """Close every open period that ended at or before ``now`` (of one subscription if ``only``)."""
        if only is not None:
            cycle = self.cycles[only]
            while cycle.period is not None and cycle.period.end <= now:
                closed, cycle = close_due(cycle)
                self._close(closed)
                self._replace(cycle)
            return
        while self._ends and self._ends[0][0] <= now:
            end, sub = heapq.heappop(self._ends)
            cycle = self.cycles[sub]
            if cycle.period is None or cycle.period.end != end:
                continue  # superseded by a change
            closed, after = close_due(cycle)
            self._close(closed)
            self._replace(after)

    def due(self, now: datetime) -> list[ClosedPeriod]:
        """Periods whose invoice is due by ``now`` (ended at least the grace period ago), in the
        order they fell due; each is returned once, until :meth:`handed` or a restart."""
        self.close_until(now)
        due = []
        while self._closed and self._closed[0][0] <= now:
            due.append(heapq.heappop(self._closed)[3])
        return due

    def late_due(self, now: datetime) -> list[ClosedPeriod]:
        """Standalone adjustment invoices of ended subscriptions that fell due by ``now``: for each
        ended subscription whose cycle (as if it went on) reached a boundary, plus the grace period,
        the one ending at the latest such boundary; each once. Whether one is invoiced depends on
        late usage that arrived before it fell due (design section 3)."""
        self.close_until(now)
        due: dict[str, ClosedPeriod] = {}
        while self._late and self._late[0][0] <= now:
            _, sub, _, closed = heapq.heappop(self._late)
            following = closed.period.end + self.grace_period + timedelta(microseconds=1)
            self._push_late(late_usage_period(self.cycles[sub], following, self.grace_period))
            if closed.period.end > self.handed_over.get(sub, closed.period.start):
                due[sub] = closed  # a later boundary of the same subscription supersedes an earlier one
        return list(due.values())

    def handed(self, closed: ClosedPeriod) -> None:
        """``closed`` reached the rating agent's topic: a restart must not hand it over again."""
        sub = closed.subscription.id
        if closed.period.end > self.handed_over.get(sub, closed.period.start):
            self.handed_over[sub] = closed.period.end

    # -- internals ---------------------------------------------------------------------------------
    def _replace(self, cycle: BillingCycle) -> None:
        self.cycles[cycle.subscription.id] = cycle
        self.moved.add(cycle.subscription.id)
        if cycle.period is not None:
            heapq.heappush(self._ends, (cycle.period.end, cycle.subscription.id))
        elif cycle.ended_at is not None:
            self._push_late(late_usage_period(cycle, cycle.ended_at, self.grace_period))

    def _push_late(self, closed: ClosedPeriod) -> None:
        self._seq += 1
        heapq.heappush(self._late, (closed.period.end + self.grace_period, closed.subscription.id, self._seq, closed))

    def _close(self, closed: ClosedPeriod) -> None:
        sub = closed.subscription.id
        if closed.period.end <= self.handed_over.get(sub, closed.period.start):
            return  # handed over before a restart
        self._seq += 1
        heapq.heappush(self._closed, (closed.period.end + self.grace_period, sub, self._seq, closed))


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision of a subscription as the ledger's history keeps it (``subscription_revisions``):
    the catalog record the rater reads, with its plan, and ``recorded_at``, when it was saved. The
    rater applies a revision without ``effective_at`` (a catalog file) when it reads it; the saving
    instant stands in for that read. ``plan_before``: the plan in force before ``effective_at``
    when the revision changed it (the previous plan of a plan change), else None."""

    revision: int
    subscription: Subscription
    plan: Plan
    lifecycle: Lifecycle
    canceled: bool
    recorded_at: datetime
    plan_before: Plan | None = None


def history_calendar(revisions: Sequence[Revision], now: datetime) -> Calendar:
    """The calendar of one subscription as the rater has it at ``now`` from its revisions (oldest
    first): each applied at its instant (:meth:`Calendar.instant_of`) once ``now`` reached it, a
    scheduled one dropped when the next was saved before its instant (the rater's ``scheduled``
    keeps the newest only), and a trial the rater found used up (``trial_end_at`` moved before its
    nominal end) ended there. The same :meth:`Calendar.apply` as the rater's, so the periods are
    the ones the loop closes."""
    calendar = Calendar()
    for index, rev in enumerate(revisions):
        sub, life = rev.subscription, rev.lifecycle
        effective = life.effective_at
        read_at = min(rev.recorded_at, now)
        if effective is not None and effective > now:
            continue  # scheduled: not in force yet
        later = revisions[index + 1] if index + 1 < len(revisions) else None
        scheduled = effective is not None and rev.recorded_at < effective
        if scheduled and later is not None and effective is not None and later.recorded_at < effective:
            continue  # superseded before it took effect
        history = calendar.history.get(sub.id)
        if not history and effective is not None and effective > sub.start_at and rev.plan_before is not None:
            # first seen at a revision that took effect after the start: opened on the plan before it
            before = replace(sub, plan_code=rev.plan_before.code)
            canceled = life.cancel_at is None and rev.canceled
            calendar.apply(Change(sub.start_at, rev.revision - 1, before, rev.plan_before, canceled))
            history = calendar.history.get(sub.id)
        if history:
            _trial_found_used(calendar, sub.id, life, now)
        at = calendar.instant_of(sub, effective, read_at)
        calendar.apply(Change(at, rev.revision, sub, rev.plan, rev.canceled))
    return calendar


def _trial_found_used(calendar: Calendar, subscription_id: str, lifecycle: Lifecycle, now: datetime) -> None:
    """End the open trial where the rater found its balance used (it writes that instant as the
    revision's ``trial_end_at``, before the trial's nominal end, not cut by a plan change)."""
    cycle = calendar.cycles.get(subscription_id)
    ended = lifecycle.trial_end_at
    if cycle is None or not cycle.is_trial or ended is None or lifecycle.trial_cut or ended > now:
        return
    assert cycle.period is not None
    if cycle.period.start <= ended < cycle.period.end:
        revision = calendar.history[subscription_id][-1].revision
        calendar.apply(Change(ended, revision, cycle.subscription, cycle.plan, trial_ended=True))


def served_periods(calendar: Calendar, subscription_id: str, now: datetime) -> list[tuple[ClosedPeriod, bool]]:
    """The subscription's periods from the first to the one holding ``now``, each with whether it
    is still open (then a :class:`ClosedPeriod` as it would close at its end); none before the
    start, and none after billing ended (a cancel, an expired trial)."""
    ended = [closed for closed in calendar.due(now) if closed.subscription.id == subscription_id]
    out = [(closed, False) for closed in ended]
    cycle = calendar.cycles.get(subscription_id)
    if cycle is not None and cycle.period is not None and cycle.period.start <= now:
        share = Fraction(0) if cycle.is_trial else proration(cycle.period, cycle.nominal)
        reason = "trial_end" if cycle.is_trial else "period_end"
        out.append((ClosedPeriod(cycle.subscription, cycle.plan, cycle.period, share, cycle.is_trial, reason), True))
    return out
