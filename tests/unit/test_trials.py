"""The trial-balance rule (invoicing/engine/trials.py), shared by ``billing simulate`` and the rater."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from invoicing.engine.subscriptions import BillingCycle, Subscription, close_due, open_cycle
from invoicing.engine.trials import trial_used_up_at
from rating.catalog import Plan, PlanMeter, PricingModel
from rating.money import Money
from rating.periods import ONE_MS, BillingInterval, Period
from rating.rate import RatingResult, RatingResultItem

START = datetime(2026, 1, 1, tzinfo=UTC)
PLAN = Plan(
    "pro", "USD", Decimal(10), BillingInterval.MONTH, False, (PlanMeter("calls", PricingModel.FLAT, Decimal(1)),)
)


def _cycle(balance: Decimal | None = Decimal("5.00")) -> BillingCycle:
    return open_cycle(Subscription("s1", "t1", "pro", START, trial_days=14, trial_balance=balance), PLAN)


def _spending(cents: int, asked: list[Period]) -> Callable[[Period], RatingResult]:
    def rate(usage: Period) -> RatingResult:
        asked.append(usage)
        item = RatingResultItem("calls", Decimal(1), Money(cents, "USD"), Fraction(0), Fraction(1), Fraction(0), None)
        return RatingResult("s1", "pro", 1, usage, Fraction(0), (item,), usage.end)

    return rate


@pytest.mark.parametrize(("cents", "ends"), [(499, False), (500, True), (501, True)])
def test_a_trial_ends_just_after_the_usage_that_used_up_its_balance(cents: int, ends: bool) -> None:
    latest = START + timedelta(days=3)
    asked: list[Period] = []
    end = trial_used_up_at(_cycle(), latest, _spending(cents, asked))
    assert end == (latest + ONE_MS if ends else None)
    assert asked == [Period(START, latest + ONE_MS)]


def test_no_early_end_at_the_trials_own_end_without_a_balance_or_outside_a_trial() -> None:
    cycle = _cycle()
    assert cycle.period is not None
    asked: list[Period] = []
    assert trial_used_up_at(cycle, cycle.period.end - ONE_MS, _spending(10_000, asked)) is None
    assert trial_used_up_at(_cycle(None), START, _spending(10_000, asked)) is None
    _, regular = close_due(cycle)
    assert trial_used_up_at(regular, START + timedelta(days=20), _spending(10_000, asked)) is None
    assert asked == []
