"""The wall-clock rater's calendar (invoicing/engine/calendar.py): the periods it closes are the
ones ``billing simulate`` invoices (a cancel at period end given as the instant the served API
resolves it to), and a restart from its record hands every period over once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.simulate import Simulation, load_scenario
from billing.simulate.scenario import Scenario
from invoicing.engine.calendar import Calendar, Change
from invoicing.engine.subscriptions import LATE_USAGE, ClosedPeriod, Subscription, cycle_at
from invoicing.ledger.memory import MemoryLedger
from rating.catalog import Plan
from rating.periods import BillingInterval
from streams.memory import MemoryUsageStore

CASES = sorted((Path(__file__).parents[1] / "scenarios" / "cases").glob("*.yaml"))


def _calendar_cases() -> list[Path]:
    """Scenarios whose changes the catalog can express: no trial balance (ended by usage), no
    cancellation by dunning (payment terms that cancel)."""
    chosen = []
    for case in CASES:
        scenario = load_scenario(case)
        if any(s.trial_balance is not None for s in scenario.subscriptions):
            continue
        if scenario.payment_terms is not None and scenario.payment_terms.cancel_after_days is not None:
            continue
        chosen.append(case)
    return chosen


def _changes(scenario: Scenario) -> list[Change]:
    subs = {s.id: s for s in scenario.subscriptions}
    plans = {s.id: scenario.plan(s.plan_code) for s in scenario.subscriptions}
    revision = dict.fromkeys(subs, 1)
    changes = [Change(s.start_at, 1, s, plans[s.id]) for s in scenario.subscriptions]
    anchors: dict[str, datetime | None] = dict.fromkeys(subs)
    for action in scenario.actions:
        if action.type not in ("change_plan", "cancel"):
            continue
        revision[action.subscription_id] += 1
        sub = subs[action.subscription_id]
        at = action.at
        if action.type == "change_plan":
            assert action.plan_code is not None
            plans[sub.id] = scenario.plan(action.plan_code)
            anchors[sub.id] = at
        elif action.at_period_end:  # as CancelSubscription resolves it: the end of the period holding now
            cycle = cycle_at(replace(sub, plan_code=plans[sub.id].code), plans[sub.id], anchors[sub.id], at)
            assert cycle.period is not None
            at = cycle.period.end
        changes.append(Change(at, revision[sub.id], sub, plans[sub.id], action.type == "cancel"))
    return sorted(changes, key=lambda c: c.at)


@pytest.mark.parametrize("case", _calendar_cases(), ids=lambda c: c.stem)
def test_the_calendar_closes_the_periods_simulate_invoices(case: Path) -> None:
    scenario = load_scenario(case)
    expected = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    calendar = Calendar(scenario.grace_period)
    due: list[ClosedPeriod] = []
    for change in _changes(scenario):
        due += calendar.due(change.at - timedelta(microseconds=1))
        calendar.apply(change)
    due += calendar.due(scenario.run_until)
    got = sorted((c.subscription.id, c.period.start, c.period.end) for c in due)
    regular = [i for i in expected if i.metadata["closed_by"] != LATE_USAGE]
    want = sorted((i.subscription_id, i.period.start, i.period.end) for i in regular)
    assert got == want
    # a standalone adjustment invoice (late usage of an ended subscription) is one the calendar
    # offers at the instant it is finalized; whether it is invoiced depends on the usage
    for invoice in sorted((i for i in expected if i not in regular), key=lambda i: i.issued_at or START):
        assert invoice.issued_at is not None
        offered = calendar.late_due(invoice.issued_at)
        assert (invoice.subscription_id, invoice.period) in {(c.subscription.id, c.period) for c in offered}


def test_a_revision_seen_before_changes_nothing() -> None:
    plan = Plan("m", "USD", base_price=_d("10"))
    sub = Subscription("s1", "t1", "m", datetime(2026, 1, 1, tzinfo=UTC))
    calendar = Calendar()
    calendar.apply(Change(sub.start_at, 1, sub, plan))
    calendar.apply(Change(datetime(2026, 1, 10, tzinfo=UTC), 1, sub, plan, canceled=True))  # redelivered rev 1
    assert [c.period.end for c in calendar.due(datetime(2026, 3, 1, tzinfo=UTC))] == [
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    ]


def _d(text: str):  # type: ignore[no-untyped-def]
    from decimal import Decimal

    return Decimal(text)


START = datetime(2026, 1, 1, tzinfo=UTC)
PLANS = {
    "m": Plan("m", "USD", base_price=_d("31")),
    "w": Plan("w", "USD", base_price=_d("7"), billing_interval=BillingInterval.WEEK),
}


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Change], list[datetime], timedelta]:
    changes = []
    for n in range(draw(st.integers(1, 4))):
        start = START + timedelta(hours=draw(st.integers(0, 24 * 60)))
        code = draw(st.sampled_from(sorted(PLANS)))
        trial = draw(st.sampled_from([0, 0, 7]))
        sub = Subscription(
            f"s{n}", "t1", code, start, timezone=draw(st.sampled_from(["UTC", "Asia/Jakarta"])), trial_days=trial
        )
        changes.append(Change(start, 1, sub, PLANS[code]))
        at = start
        for revision in range(2, draw(st.integers(2, 4))):
            at += timedelta(hours=draw(st.integers(1, 24 * 40)))
            other = draw(st.sampled_from(sorted(PLANS)))
            canceled = draw(st.booleans()) and revision > 2
            moved = Subscription(sub.id, "t1", other, start, timezone=sub.timezone, trial_days=trial)
            changes.append(Change(at, revision, moved, PLANS[other], canceled))
    ticks = sorted({START + timedelta(hours=draw(st.integers(0, 24 * 200))) for _ in range(draw(st.integers(1, 12)))})
    grace = timedelta(hours=draw(st.sampled_from([0, 1, 48])))
    return sorted(changes, key=lambda c: c.at), ticks, grace


def _run(calendar: Calendar, changes: list[Change], ticks: list[datetime]) -> list[tuple[str, datetime, datetime]]:
    """Drive ``calendar`` like the rater: changes when their instant comes, due periods on each tick."""
    handed = []
    pending = list(changes)
    for tick in ticks:
        while pending and pending[0].at <= tick:
            calendar.apply(pending.pop(0))
        for closed in calendar.due(tick):
            calendar.handed(closed)
            handed.append((closed.subscription.id, closed.period.start, closed.period.end))
    return handed


@settings(max_examples=150)
@given(histories(), st.integers(0, 12))
def test_a_restarted_calendar_hands_every_period_over_exactly_once(
    history: tuple[list[Change], list[datetime], timedelta], crash_after: int
) -> None:
    changes, ticks, grace = history
    whole = _run(Calendar(grace), changes, ticks)

    before, after = ticks[:crash_after], ticks[crash_after:]
    first = Calendar(grace)
    handed = _run(first, changes, before)
    # what the rater recorded: the changes it applied, and per subscription the last period handed over
    recorded = {sub: list(h) for sub, h in first.history.items()}
    restarted = Calendar(grace)
    restarted.replay(recorded, dict(first.handed_over))
    applied = {(c.subscription.id, c.revision) for h in recorded.values() for c in h}
    handed += _run(restarted, [c for c in changes if (c.subscription.id, c.revision) not in applied], after)

    assert sorted(handed) == sorted(whole)
    assert len(set(handed)) == len(handed)
