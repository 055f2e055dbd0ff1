"""A subscription's periods replayed from its revision history (invoicing/engine/calendar.py
``history_calendar``, ``served_periods``): the periods ``billing simulate`` invoices for every
scenario the catalog can express, scheduled revisions applied only once in force (and dropped when
superseded first), a trial the rater found used up ended there, a backfilled history opened on the
plan before its latest change, and the periods tiling the subscription's billing without gap or
overlap."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.simulate import Simulation, load_scenario
from invoicing.engine.calendar import Change, Revision, history_calendar, served_periods
from invoicing.engine.subscriptions import LATE_USAGE, Lifecycle, Subscription, lifecycle_of
from invoicing.ledger.memory import MemoryLedger
from rating.catalog import Plan
from rating.periods import BillingInterval
from streams.memory import MemoryUsageStore
from tests.unit.test_calendar import _calendar_cases, _changes

pytestmark = pytest.mark.unit

D = datetime(2026, 1, 1, tzinfo=UTC)
MONTHLY = Plan("m", "USD", base_price=Decimal("31"))
WEEKLY = Plan("w", "USD", base_price=Decimal("7"), billing_interval=BillingInterval.WEEK)
PLANS = {"m": MONTHLY, "w": WEEKLY}


def _revision(change: Change, recorded_at: datetime) -> Revision:
    """The stored revision the API saves for ``change`` (the first one: a creation, in force when read)."""
    sub = change.subscription
    life = lifecycle_of(sub) if change.revision == 1 else Lifecycle(effective_at=change.at)
    return Revision(change.revision, sub, change.plan, life, change.canceled, recorded_at)


def _ended(revisions: list[Revision], now: datetime) -> list[tuple[datetime, datetime]]:
    sub = revisions[0].subscription.id
    served = served_periods(history_calendar(revisions, now), sub, now)
    return [(c.period.start, c.period.end) for c, is_open in served if not is_open]


@pytest.mark.parametrize("case", _calendar_cases(), ids=lambda c: c.stem)
def test_the_history_serves_the_periods_simulate_invoices(case: Path) -> None:
    scenario = load_scenario(case)
    invoices = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    by_sub: dict[str, list[Revision]] = {}
    for change in _changes(scenario):  # each saved when it takes effect
        by_sub.setdefault(change.subscription.id, []).append(_revision(change, change.at))
    for sub, revisions in by_sub.items():
        want = sorted(
            (i.period.start, i.period.end)
            for i in invoices
            if i.subscription_id == sub and i.metadata["closed_by"] != LATE_USAGE
        )
        # simulate invoices a period once its grace period passed by the end of the run
        got = [p for p in _ended(revisions, scenario.run_until) if p[1] + scenario.grace_period <= scenario.run_until]
        assert got == want, sub


def _sub(**fields: object) -> Subscription:
    return Subscription("s1", "t1", "m", D, **fields)  # type: ignore[arg-type]


def test_a_plan_change_at_an_instant_then_a_cancel_at_period_end_cut_the_periods() -> None:
    sub = _sub()
    change_at, requested = datetime(2026, 2, 11, tzinfo=UTC), datetime(2026, 2, 5, tzinfo=UTC)
    weekly = replace(sub, plan_code="w")
    revisions = [
        Revision(1, sub, MONTHLY, lifecycle_of(sub), False, D),
        Revision(2, weekly, WEEKLY, Lifecycle(effective_at=change_at), False, requested),
        # canceled on 2026-02-20 at the end of the weekly period holding it
        Revision(3, weekly, WEEKLY, Lifecycle(effective_at=datetime(2026, 2, 25, tzinfo=UTC)), True, change_at),
    ]
    now = datetime(2026, 4, 1, tzinfo=UTC)
    served = served_periods(history_calendar(revisions, now), "s1", now)
    assert [(c.period.start.day, c.period.end.day, c.plan.code, c.reason, is_open) for c, is_open in served] == [
        (1, 1, "m", "period_end", False),
        (1, 11, "m", "plan_change", False),
        (11, 18, "w", "period_end", False),
        (18, 25, "w", "period_end", False),
    ]
    assert served[1][0].share == Fraction(10, 28)
    # before the change took effect, the current period is the whole monthly one
    before = datetime(2026, 2, 8, tzinfo=UTC)
    current = [c.period for c, is_open in served_periods(history_calendar(revisions, before), "s1", before) if is_open]
    assert [(p.start, p.end) for p in current] == [(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))]


def test_a_scheduled_revision_superseded_before_its_instant_is_not_applied() -> None:
    sub = _sub()
    first, moved = datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 2, 10, tzinfo=UTC)
    revisions = [
        Revision(1, sub, MONTHLY, lifecycle_of(sub), False, D),
        Revision(2, sub, MONTHLY, Lifecycle(effective_at=first, cancel_at=first), True, D + timedelta(days=2)),
        Revision(3, sub, MONTHLY, Lifecycle(effective_at=moved, cancel_at=moved), True, D + timedelta(days=5)),
    ]
    assert _ended(revisions, datetime(2026, 6, 1, tzinfo=UTC)) == [
        (D, datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2026, 2, 1, tzinfo=UTC), moved),
    ]
    # moved only after the first cancel took effect: the subscription had ended there already
    late = [*revisions[:2], replace(revisions[2], recorded_at=datetime(2026, 1, 25, tzinfo=UTC))]
    assert _ended(late, datetime(2026, 6, 1, tzinfo=UTC)) == [(D, first)]


def test_a_trial_the_rater_found_used_up_ends_where_it_wrote() -> None:
    sub = _sub(trial_days=14, trial_balance=Decimal("5"))
    found = datetime(2026, 1, 6, tzinfo=UTC)
    life = lifecycle_of(sub)
    revisions = [
        Revision(1, sub, MONTHLY, life, False, D),
        Revision(2, sub, MONTHLY, replace(life, trial_end_at=found), False, found + timedelta(seconds=3)),
    ]
    assert _ended(revisions, datetime(2026, 2, 7, tzinfo=UTC)) == [
        (D, found),
        (found, datetime(2026, 2, 6, tzinfo=UTC)),
    ]


def test_a_backfilled_history_opens_on_the_plan_before_its_latest_change() -> None:
    weekly = replace(_sub(), plan_code="w")
    change_at = datetime(2026, 1, 20, tzinfo=UTC)
    life = Lifecycle(effective_at=change_at, previous_plan_code="m", previous_plan_version=1, plan_changed_at=change_at)
    backfilled = [Revision(2, weekly, WEEKLY, life, False, change_at, plan_before=MONTHLY)]
    assert _ended(backfilled, datetime(2026, 2, 1, tzinfo=UTC)) == [
        (D, change_at),
        (change_at, change_at + timedelta(7)),
    ]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Revision], datetime]:
    start = D + timedelta(hours=draw(st.integers(0, 24 * 30)))
    code = draw(st.sampled_from(sorted(PLANS)))
    sub = Subscription("s1", "t1", code, start, timezone=draw(st.sampled_from(["UTC", "Asia/Jakarta"])))
    sub = replace(sub, trial_days=draw(st.sampled_from([0, 0, 7])))
    revisions = [Revision(1, sub, PLANS[code], lifecycle_of(sub), False, start)]
    at = start
    for revision in range(2, draw(st.integers(2, 6))):
        at += timedelta(hours=draw(st.integers(1, 24 * 40)))
        other = draw(st.sampled_from(sorted(PLANS)))
        canceled = draw(st.booleans()) and revision > 2
        ahead = timedelta(hours=draw(st.sampled_from([0, 0, 30])))  # saved before its instant
        saved = max(at - ahead, revisions[-1].recorded_at)  # in commit order
        moved = replace(sub, plan_code=other)
        revisions.append(Revision(revision, moved, PLANS[other], Lifecycle(effective_at=at), canceled, saved))
    now = start + timedelta(hours=draw(st.integers(0, 24 * 200)))
    return revisions, now


@settings(max_examples=200)
@given(histories())
def test_the_served_periods_tile_the_billing_without_gap_or_overlap(history: tuple[list[Revision], datetime]) -> None:
    revisions, now = history
    served = served_periods(history_calendar(revisions, now), "s1", now)
    start = revisions[0].subscription.start_at
    if now < start:
        assert served == []
        return
    periods = [c.period for c, _ in served]
    assert periods, "a subscription billed from its start has a period by now"
    assert periods[0].start == start
    for before, after in pairwise(periods):
        assert before.end == after.start
        assert before.start < before.end
    assert [is_open for _, is_open in served[:-1]] == [False] * (len(served) - 1)
    assert all(p.end <= now for p, (_, is_open) in zip(periods, served, strict=True) if not is_open)
    # billing ends only by a cancel in force by now (the trials here have a payment method)
    if not served[-1][1]:
        assert any(
            r.canceled and r.lifecycle.effective_at is not None and r.lifecycle.effective_at <= now for r in revisions
        )
