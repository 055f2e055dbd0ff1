"""The trial-balance rule: a trial with a balance ends early, right after the usage that used it up.
Pure: the caller brings the latest usage instant and rates the usage it is asked for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from invoicing.engine.subscriptions import BillingCycle
from rating.money import to_minor
from rating.periods import ONE_MS, Period
from rating.rate import RatingResult


def trial_used_up_at(
    cycle: BillingCycle, latest_usage: datetime, rate: Callable[[Period], RatingResult]
) -> datetime | None:
    """The instant the trial of ``cycle`` ends because its balance is used up: just after
    ``latest_usage`` (its latest usage in the trial), when the usage up to then, priced by ``rate``
    without base fee, reached the balance. None when it does not end before its period does."""
    balance = cycle.subscription.trial_balance
    if not cycle.is_trial or cycle.period is None or balance is None:
        return None
    end = min(latest_usage + ONE_MS, cycle.period.end)
    if end >= cycle.period.end:
        return None  # the trial ends at its end anyway
    spent = sum(item.amount.amount for item in rate(Period(cycle.period.start, end)).items)
    return end if spent >= to_minor(balance, cycle.plan.currency_code) else None
