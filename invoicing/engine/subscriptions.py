"""Subscription lifecycle: where a subscription stands in its billing calendar, and how plan
changes, cancellations and trials cut its periods. Pure: the caller brings the instants."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from rating.catalog import Plan
from rating.errors import InvalidValue
from rating.periods import Period, add_local_days, boundary, period_at, proration, zone

LATE_USAGE = "late_usage"
"""The reason of a standalone adjustment invoice: late usage of a subscription that has ended."""


class SubscriptionStatus(StrEnum):
    TRIALING = "TRIALING"
    ACTIVE = "ACTIVE"
    PAST_DUE = "PAST_DUE"
    CANCELED = "CANCELED"
    TRIAL_EXPIRED = "TRIAL_EXPIRED"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A tenant's subscription to a plan; it references the plan, it never copies prices."""

    id: str
    tenant_id: str
    plan_code: str
    start_at: datetime
    timezone: str = "UTC"
    region_code: str | None = None
    allow_overage_billing: bool = True
    trial_days: int = 0
    trial_balance: Decimal | None = None
    has_payment_method: bool = True
    coupon_code: str | None = None

    def __post_init__(self) -> None:
        zone(self.timezone)
        if self.trial_days < 0:
            raise InvalidValue("trial_days", f"must not be negative, got {self.trial_days}")
        if self.start_at.tzinfo is None:
            raise InvalidValue("start_at", "must carry a timezone")


def trial_end(subscription: Subscription) -> datetime | None:
    """The nominal end of the subscription's trial (None without one)."""
    if not subscription.trial_days:
        return None
    return add_local_days(subscription.start_at, subscription.trial_days, subscription.timezone)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The instants a subscription's stored revision carries beside its terms (design section 6):
    when the revision takes effect, what it changed, and what decides the status on any clock.

    A revision is the state from ``effective_at`` on (None: from when the rater read it, as for
    catalog files); before that instant the subscription was on ``previous_plan_code`` /
    ``previous_plan_version`` when the revision changes the plan. ``plan_changed_at`` anchors the
    current plan's periods (its latest plan change; None: the periods run from the start).
    ``trial_end_at`` is when the trial ends: its nominal end, or a plan change's instant when one
    cut it short (``trial_cut``: the subscription goes on ACTIVE, never TRIAL_EXPIRED)."""

    effective_at: datetime | None = None
    previous_plan_code: str | None = None
    previous_plan_version: int | None = None
    plan_changed_at: datetime | None = None
    trial_end_at: datetime | None = None
    trial_cut: bool = False
    cancel_at: datetime | None = None
    canceled_at: datetime | None = None
    cancel_at_period_end: bool = False
    cancel_reason: str | None = None

    def pending(self, now: datetime) -> bool:
        """Whether the revision takes effect after ``now`` (scheduled, not yet in force)."""
        return self.effective_at is not None and self.effective_at > now

    def anchor(self, subscription: Subscription, at: datetime) -> datetime | None:
        """Where the periods holding ``at`` are anchored: the latest plan change, or the instant
        the trial's balance ran out (the rater's finding, as ``trial_end_at`` before the nominal
        end); None: the periods run from the start."""
        if self.plan_changed_at is not None and self.plan_changed_at <= at:
            return self.plan_changed_at
        nominal = trial_end(subscription)
        ended = self.trial_end_at
        if ended is not None and nominal is not None and ended < nominal and not self.trial_cut and ended <= at:
            return ended
        return None


def lifecycle_of(subscription: Subscription) -> Lifecycle:
    """The lifecycle of a subscription saved without one (created, or changed by a catalog file)."""
    return Lifecycle(trial_end_at=trial_end(subscription))


def status_at(
    written: SubscriptionStatus, subscription: Subscription, lifecycle: Lifecycle, now: datetime
) -> SubscriptionStatus:
    """The status at ``now``: CANCELED from ``cancel_at``; TRIALING until the trial ends, then
    ACTIVE, or TRIAL_EXPIRED without a payment method (unless a plan change ended the trial).
    ``written`` is the status the revision was saved with: PAST_DUE is the payments' to set and
    clear, and a CANCELED or TRIAL_EXPIRED written without instants (before they were kept) stays."""
    if lifecycle.cancel_at is not None and lifecycle.cancel_at <= now:
        return SubscriptionStatus.CANCELED
    if written is SubscriptionStatus.PAST_DUE:
        return written
    if lifecycle.cancel_at is None and written in (SubscriptionStatus.CANCELED, SubscriptionStatus.TRIAL_EXPIRED):
        return written
    end = lifecycle.trial_end_at
    if end is None:
        return SubscriptionStatus.ACTIVE
    if now < end:
        return SubscriptionStatus.TRIALING
    if lifecycle.trial_cut or subscription.has_payment_method:
        return SubscriptionStatus.ACTIVE
    return SubscriptionStatus.TRIAL_EXPIRED


def cycle_at(subscription: Subscription, plan: Plan, anchor: datetime | None, now: datetime) -> BillingCycle:
    """The cycle holding ``now`` (or the first one, before the start), as the rater's calendar has
    it: the periods run from the start, or from ``anchor`` (``Lifecycle.anchor``: a plan change or
    a trial's balance running out, which start regular periods there)."""
    first = open_cycle(subscription, plan)
    cycle = first if anchor is None else _regular(subscription, plan, anchor)
    while cycle.period is not None and cycle.period.end <= now:
        _, cycle = close_due(cycle)
    return cycle


@dataclass(frozen=True, slots=True)
class ClosedPeriod:
    """A period that ended and is to be invoiced. ``share`` scales the base fee and included units
    (1 for a full period, the seconds fraction for a cut one, 0 for a trial)."""

    subscription: Subscription
    plan: Plan
    period: Period
    share: Fraction
    is_trial: bool
    reason: str

    @property
    def is_adjustment(self) -> bool:
        """A standalone adjustment invoice (ADJUSTMENT lines only) of an ended subscription."""
        return self.reason == LATE_USAGE


@dataclass(frozen=True, slots=True)
class BillingCycle:
    """The open period of a subscription (``period`` None once it bills nothing more)."""

    subscription: Subscription
    plan: Plan
    status: SubscriptionStatus
    anchor: datetime
    index: int
    period: Period | None
    cancel_at_period_end: bool = False
    ended_at: datetime | None = None
    """When the subscription stopped billing (``period`` is None from then on)."""

    @property
    def is_trial(self) -> bool:
        return self.status is SubscriptionStatus.TRIALING

    @property
    def nominal(self) -> Period:
        """The full period the open one belongs to (a trial is its own nominal period)."""
        assert self.period is not None
        if self.is_trial:
            return self.period
        start = boundary(self.anchor, self.plan.billing_interval, self.index, self.subscription.timezone)
        end = boundary(self.anchor, self.plan.billing_interval, self.index + 1, self.subscription.timezone)
        return Period(start, end)


def _regular(subscription: Subscription, plan: Plan, anchor: datetime) -> BillingCycle:
    end = boundary(anchor, plan.billing_interval, 1, subscription.timezone)
    return BillingCycle(subscription, plan, SubscriptionStatus.ACTIVE, anchor, 0, Period(anchor, end))


def _ended(cycle: BillingCycle, status: SubscriptionStatus, at: datetime) -> BillingCycle:
    # a trial is its own period: the cycle that would have followed it is anchored at its end
    anchor, index = (at, 0) if cycle.is_trial else (cycle.anchor, cycle.index)
    ended = replace(cycle, status=status, period=None, cancel_at_period_end=False, ended_at=at)
    return replace(ended, anchor=anchor, index=index)


def open_cycle(subscription: Subscription, plan: Plan) -> BillingCycle:
    """The first period: a trial when ``trial_days`` > 0, else the first anniversary period."""
    if plan.code != subscription.plan_code:
        raise InvalidValue("plan_code", f"subscription is on {subscription.plan_code!r}, not {plan.code!r}")
    if subscription.trial_days:
        trial_end = add_local_days(subscription.start_at, subscription.trial_days, subscription.timezone)
        trial = Period(subscription.start_at, trial_end)
        return BillingCycle(subscription, plan, SubscriptionStatus.TRIALING, subscription.start_at, 0, trial)
    return _regular(subscription, plan, subscription.start_at)


def _close(cycle: BillingCycle, end: datetime, reason: str) -> ClosedPeriod | None:
    assert cycle.period is not None
    cut = Period(cycle.period.start, end)
    if cut.seconds == 0:
        return None
    share = Fraction(0) if cycle.is_trial else proration(cut, cycle.nominal)
    return ClosedPeriod(cycle.subscription, cycle.plan, cut, share, cycle.is_trial, reason)


def _after_trial(cycle: BillingCycle, at: datetime) -> BillingCycle:
    if cycle.subscription.has_payment_method:
        return _regular(cycle.subscription, cycle.plan, at)
    return _ended(cycle, SubscriptionStatus.TRIAL_EXPIRED, at)


def close_due(cycle: BillingCycle) -> tuple[ClosedPeriod, BillingCycle]:
    """Close the open period at its end and open the next one (or end the subscription)."""
    if cycle.period is None:
        raise InvalidValue("status", f"subscription {cycle.subscription.id} has no open period")
    end = cycle.period.end
    closed = _close(cycle, end, "trial_end" if cycle.is_trial else "period_end")
    assert closed is not None
    if cycle.cancel_at_period_end:  # a trial canceled at its end bills nothing after it
        return closed, _ended(cycle, SubscriptionStatus.CANCELED, end)
    if cycle.is_trial:
        return closed, _after_trial(cycle, end)
    index = cycle.index + 1
    nxt = Period(end, boundary(cycle.anchor, cycle.plan.billing_interval, index + 1, cycle.subscription.timezone))
    return closed, replace(cycle, index=index, period=nxt)


def _inside(cycle: BillingCycle, at: datetime, what: str) -> None:
    if cycle.period is None:
        raise InvalidValue("subscription_id", f"cannot {what}: subscription {cycle.subscription.id} is {cycle.status}")
    if not cycle.period.start <= at < cycle.period.end:
        raise InvalidValue("at", f"{at} is outside the open period {cycle.period.start}–{cycle.period.end}")


def change_plan(cycle: BillingCycle, plan: Plan, at: datetime) -> tuple[ClosedPeriod | None, BillingCycle]:
    """Close the open period at ``at`` (prorated) and open the new plan's periods anchored at ``at``.
    A change ends a trial."""
    _inside(cycle, at, "change plan")
    closed = _close(cycle, at, "plan_change")
    subscription = replace(cycle.subscription, plan_code=plan.code)
    return closed, _regular(subscription, plan, at)


def cancel(cycle: BillingCycle, at: datetime, at_period_end: bool) -> tuple[ClosedPeriod | None, BillingCycle]:
    """Cancel now (the partial period is invoiced, prorated) or when the open period ends."""
    _inside(cycle, at, "cancel")
    if at_period_end:
        return None, replace(cycle, cancel_at_period_end=True)
    return _close(cycle, at, "cancel"), _ended(cycle, SubscriptionStatus.CANCELED, at)


def end_trial(cycle: BillingCycle, at: datetime) -> tuple[ClosedPeriod | None, BillingCycle]:
    """End a trial early (its balance is used up): the trial closes at ``at``."""
    if not cycle.is_trial:
        raise InvalidValue("status", f"subscription {cycle.subscription.id} is not trialing")
    _inside(cycle, at, "end the trial")
    return _close(cycle, at, "trial_balance_used"), _after_trial(cycle, at)


def late_usage_period(cycle: BillingCycle, arrived_at: datetime, grace_period: timedelta) -> ClosedPeriod:
    """The standalone adjustment invoice that bills late usage of an ended subscription arriving at
    ``arrived_at``: the period of its billing cycle, as if the cycle went on after ``ended_at``,
    whose invoice falls due (end + grace) at or after the arrival. The first one starts at the end."""
    if cycle.period is not None or cycle.ended_at is None:
        raise InvalidValue("status", f"subscription {cycle.subscription.id} has not ended")
    interval, tz = cycle.plan.billing_interval, cycle.subscription.timezone
    first = Period(cycle.ended_at, period_at(cycle.anchor, interval, tz, cycle.ended_at)[1].end)
    # the period with start < arrived_at - grace <= end (instants are whole microseconds)
    instant = arrived_at - grace_period - timedelta(microseconds=1)
    period = first if instant < first.end else period_at(cycle.anchor, interval, tz, instant)[1]
    return ClosedPeriod(cycle.subscription, cycle.plan, period, Fraction(0), False, LATE_USAGE)
