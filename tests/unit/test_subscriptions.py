"""Subscription calendar: periods, plan changes, cancellations and trials cut periods as the design says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from invoicing.engine.subscriptions import (
    Lifecycle,
    Subscription,
    SubscriptionStatus,
    cancel,
    change_plan,
    close_due,
    cycle_at,
    end_trial,
    late_usage_period,
    open_cycle,
    status_at,
)
from rating.catalog import Plan
from rating.errors import InvalidValue
from rating.periods import BillingInterval, Period

pytestmark = pytest.mark.unit

PRO = Plan("pro", "USD", Decimal(49))
TEAM = Plan("team", "USD", Decimal(99), BillingInterval.WEEK)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def sub(**changes: object) -> Subscription:
    fields: dict[str, object] = {"id": "s1", "tenant_id": "t1", "plan_code": "pro", "start_at": utc(2026, 1, 31)}
    fields.update(changes)
    return Subscription(**fields)  # type: ignore[arg-type]


def test_periods_follow_the_anniversary_with_the_clamp() -> None:
    cycle = open_cycle(sub(), PRO)
    ends = []
    for _ in range(3):
        closed, cycle = close_due(cycle)
        assert closed.share == 1 and not closed.is_trial and closed.reason == "period_end"
        ends.append(closed.period.end)
    assert ends == [utc(2026, 2, 28), utc(2026, 3, 31), utc(2026, 4, 30)]


def test_plan_change_closes_prorated_and_reanchors() -> None:
    cycle = open_cycle(sub(start_at=utc(2026, 1, 1)), PRO)
    closed, after = change_plan(cycle, TEAM, utc(2026, 1, 15))
    assert closed is not None
    assert closed.period == Period(utc(2026, 1, 1), utc(2026, 1, 15))
    assert closed.share == Fraction(14, 31) and closed.reason == "plan_change" and closed.plan == PRO
    assert after.plan == TEAM and after.subscription.plan_code == "team"
    assert after.period == Period(utc(2026, 1, 15), utc(2026, 1, 22))  # weekly, anchored at the change


def test_a_change_at_the_period_start_closes_nothing() -> None:
    cycle = open_cycle(sub(start_at=utc(2026, 1, 1)), PRO)
    closed, after = change_plan(cycle, TEAM, utc(2026, 1, 1))
    assert closed is None and after.plan == TEAM


def test_cancel_immediately_and_at_period_end() -> None:
    cycle = open_cycle(sub(start_at=utc(2026, 1, 1)), PRO)
    closed, after = cancel(cycle, utc(2026, 1, 11), at_period_end=False)
    assert closed is not None and closed.share == Fraction(10, 31) and closed.reason == "cancel"
    assert after.status is SubscriptionStatus.CANCELED and after.period is None
    with pytest.raises(InvalidValue):
        cancel(after, utc(2026, 1, 12), at_period_end=False)

    none, pending = cancel(cycle, utc(2026, 1, 11), at_period_end=True)
    assert none is None and pending.cancel_at_period_end and pending.status is SubscriptionStatus.ACTIVE
    last, ended = close_due(pending)
    assert last.period == Period(utc(2026, 1, 1), utc(2026, 2, 1)) and last.share == 1
    assert ended.status is SubscriptionStatus.CANCELED and ended.period is None
    with pytest.raises(InvalidValue):
        close_due(ended)


def test_actions_outside_the_open_period_are_rejected() -> None:
    cycle = open_cycle(sub(start_at=utc(2026, 1, 1)), PRO)
    with pytest.raises(InvalidValue) as caught:
        change_plan(cycle, TEAM, utc(2026, 2, 1))  # the period is half-open
    assert caught.value.field == "at"


def test_trial_then_active_anchored_at_the_trial_end() -> None:
    cycle = open_cycle(sub(start_at=utc(2026, 1, 1), trial_days=14), PRO)
    assert cycle.status is SubscriptionStatus.TRIALING
    trial, after = close_due(cycle)
    assert trial.is_trial and trial.share == 0 and trial.period == Period(utc(2026, 1, 1), utc(2026, 1, 15))
    assert after.status is SubscriptionStatus.ACTIVE
    assert after.period == Period(utc(2026, 1, 15), utc(2026, 2, 15))


def test_trial_without_a_payment_method_expires() -> None:
    cycle = open_cycle(sub(trial_days=7, has_payment_method=False), PRO)
    _, after = close_due(cycle)
    assert after.status is SubscriptionStatus.TRIAL_EXPIRED and after.period is None


def test_trial_ended_early_by_its_balance() -> None:
    cycle = open_cycle(sub(start_at=utc(2026, 1, 1), trial_days=14, trial_balance=Decimal(5)), PRO)
    closed, after = end_trial(cycle, utc(2026, 1, 3, 12))
    assert closed is not None and closed.reason == "trial_balance_used" and closed.share == 0
    assert after.period == Period(utc(2026, 1, 3, 12), utc(2026, 2, 3, 12))
    with pytest.raises(InvalidValue):
        end_trial(after, utc(2026, 1, 4))


def test_trial_days_are_local_calendar_days() -> None:
    cycle = open_cycle(sub(start_at=utc(2026, 3, 1, 5), trial_days=14, timezone="America/New_York"), PRO)
    assert cycle.period is not None
    assert cycle.period.end == utc(2026, 3, 15, 4)  # midnight EDT: 14 local days are 335 hours


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"trial_days": -1}, "trial_days"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"start_at": datetime(2026, 1, 1)}, "start_at"),  # noqa: DTZ001
    ],
)
def test_bad_subscriptions(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        sub(**changes)
    assert caught.value.field == field


def test_open_cycle_needs_the_subscriptions_plan() -> None:
    with pytest.raises(InvalidValue):
        open_cycle(sub(), TEAM)


JAN1 = utc(2026, 1, 1)


@pytest.mark.parametrize(
    ("how", "arrived", "grace_h", "period"),
    [
        # canceled now on Jan 16: the first adjustment period runs from the end to the cycle's boundary
        ("cancel_now", utc(2026, 1, 20), 0, (utc(2026, 1, 16), utc(2026, 2, 1))),
        ("cancel_now", utc(2026, 2, 1), 0, (utc(2026, 1, 16), utc(2026, 2, 1))),  # at the boundary: that one
        ("cancel_now", utc(2026, 2, 1, 0, 0, 1), 0, (utc(2026, 2, 1), utc(2026, 3, 1))),
        ("cancel_now", utc(2026, 2, 1, 1), 2, (utc(2026, 1, 16), utc(2026, 2, 1))),  # due Feb 1 02:00
        ("cancel_now", utc(2026, 7, 4), 0, (utc(2026, 7, 1), utc(2026, 8, 1))),
        # canceled at the end of January: the cycle goes on from Feb 1
        ("at_period_end", utc(2026, 2, 3), 0, (utc(2026, 2, 1), utc(2026, 3, 1))),
        # a trial of 14 days without a payment method: the cycle that would have followed it
        ("trial", utc(2026, 1, 20), 0, (utc(2026, 1, 15), utc(2026, 2, 15))),
        ("trial", utc(2026, 2, 20), 0, (utc(2026, 2, 15), utc(2026, 3, 15))),
    ],
)
def test_late_usage_of_an_ended_subscription_is_invoiced_at_the_next_boundary_of_its_cycle(
    how: str, arrived: datetime, grace_h: int, period: tuple[datetime, datetime]
) -> None:
    if how == "trial":
        _, cycle = close_due(open_cycle(sub(start_at=JAN1, trial_days=14, has_payment_method=False), PRO))
        assert cycle.status is SubscriptionStatus.TRIAL_EXPIRED and cycle.ended_at == utc(2026, 1, 15)
    elif how == "cancel_now":
        _, cycle = cancel(open_cycle(sub(start_at=JAN1), PRO), utc(2026, 1, 16), at_period_end=False)
    else:
        _, cycle = cancel(open_cycle(sub(start_at=JAN1), PRO), utc(2026, 1, 16), at_period_end=True)
        _, cycle = close_due(cycle)
    adjustment = late_usage_period(cycle, arrived, timedelta(hours=grace_h))
    assert adjustment.period == Period(*period)
    assert adjustment.is_adjustment and adjustment.share == 0 and not adjustment.is_trial


def test_only_an_ended_subscription_has_adjustment_invoices() -> None:
    with pytest.raises(InvalidValue):
        late_usage_period(open_cycle(sub(), PRO), utc(2026, 3, 1), timedelta(0))


@pytest.mark.parametrize(
    ("written", "lifecycle", "has_card", "now", "expected"),
    [
        # a trial: TRIALING until its end, then ACTIVE with a card, TRIAL_EXPIRED without
        (SubscriptionStatus.TRIALING, Lifecycle(trial_end_at=utc(2026, 1, 15)), True, utc(2026, 1, 14), "TRIALING"),
        (SubscriptionStatus.TRIALING, Lifecycle(trial_end_at=utc(2026, 1, 15)), True, utc(2026, 1, 15), "ACTIVE"),
        (
            SubscriptionStatus.TRIALING,
            Lifecycle(trial_end_at=utc(2026, 1, 15)),
            False,
            utc(2026, 1, 15),
            "TRIAL_EXPIRED",
        ),
        # a plan change cut the trial: ACTIVE, even without a card
        (
            SubscriptionStatus.ACTIVE,
            Lifecycle(trial_end_at=utc(2026, 1, 5), trial_cut=True),
            False,
            utc(2026, 2, 1),
            "ACTIVE",
        ),
        # a cancel takes effect at its instant, not when asked
        (SubscriptionStatus.CANCELED, Lifecycle(cancel_at=utc(2026, 2, 1)), True, utc(2026, 1, 31), "ACTIVE"),
        (SubscriptionStatus.CANCELED, Lifecycle(cancel_at=utc(2026, 2, 1)), True, utc(2026, 2, 1), "CANCELED"),
        # written before instants were kept: as written
        (SubscriptionStatus.CANCELED, Lifecycle(), True, utc(2026, 1, 2), "CANCELED"),
        (SubscriptionStatus.PAST_DUE, Lifecycle(), True, utc(2026, 1, 2), "PAST_DUE"),
        (SubscriptionStatus.PAST_DUE, Lifecycle(cancel_at=utc(2026, 1, 2)), True, utc(2026, 1, 2), "CANCELED"),
    ],
)
def test_the_status_follows_the_lifecycle_instants(
    written: SubscriptionStatus, lifecycle: Lifecycle, has_card: bool, now: datetime, expected: str
) -> None:
    assert status_at(written, sub(has_payment_method=has_card), lifecycle, now) == SubscriptionStatus(expected)


def test_the_cycle_at_an_instant_runs_from_the_start_or_the_latest_plan_change() -> None:
    assert cycle_at(sub(start_at=JAN1), PRO, None, utc(2026, 3, 10)).period == Period(utc(2026, 3, 1), utc(2026, 4, 1))
    changed = cycle_at(sub(start_at=JAN1), PRO, utc(2026, 1, 11), utc(2026, 3, 10))
    assert changed.period == Period(utc(2026, 2, 11), utc(2026, 3, 11))
    trial = cycle_at(sub(start_at=JAN1, trial_days=14), PRO, None, utc(2026, 1, 3))
    assert trial.is_trial and trial.period == Period(JAN1, utc(2026, 1, 15))


def test_a_trial_canceled_at_its_end_bills_nothing_after_it() -> None:
    trial = open_cycle(sub(start_at=JAN1, trial_days=14), PRO)
    _, pending = cancel(trial, utc(2026, 1, 3), at_period_end=True)
    closed, after = close_due(pending)
    assert closed.is_trial and after.period is None and after.status is SubscriptionStatus.CANCELED


def test_periods_are_anchored_at_a_plan_change_or_where_a_trial_balance_ran_out() -> None:
    trial = sub(start_at=JAN1, trial_days=14)
    assert Lifecycle(trial_end_at=utc(2026, 1, 15)).anchor(trial, utc(2026, 2, 1)) is None  # nominal end
    ran_out = Lifecycle(trial_end_at=utc(2026, 1, 4))
    assert ran_out.anchor(trial, utc(2026, 1, 3)) is None and ran_out.anchor(trial, utc(2026, 2, 1)) == utc(2026, 1, 4)
    cut = Lifecycle(trial_end_at=utc(2026, 1, 6), trial_cut=True, plan_changed_at=utc(2026, 1, 6))
    assert cut.anchor(trial, utc(2026, 1, 5)) is None and cut.anchor(trial, utc(2026, 1, 6)) == utc(2026, 1, 6)
