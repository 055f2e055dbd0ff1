"""Whether a final rating rates a period as its invoice billed it: the comparison the invoice worker
makes before it takes a second final rating of an invoiced period as a redelivery. Exact: any
difference in a quantity, amount, unit price, breakdown, the period, the plan or the proration is
one; the same values written otherwise (``1500`` and ``1500.000``), or rated at another instant,
are not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from invoicing.engine.charges import rate_closed, rating_differences
from invoicing.engine.model import Invoice
from invoicing.engine.subscriptions import ClosedPeriod, Subscription
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.memory import MemoryLedger
from invoicing.ports import UsageRequest
from invoicing.service import InvoiceService
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier
from rating.periods import Period
from rating.rate import RatingResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JANUARY = Period(T0, datetime(2026, 2, 1, tzinfo=UTC))
AT = JANUARY.end + timedelta(hours=1)
PLAN = Plan(
    "pro",
    "USD",
    Decimal("49.00"),
    meters=(
        PlanMeter("api_calls", PricingModel.PER_UNIT, Decimal("0.0015"), Decimal("1000")),
        PlanMeter(
            "storage_gb", PricingModel.TIERED, tiers=(Tier(Decimal("10"), Decimal("0.5")), Tier(None, Decimal("0.25")))
        ),
    ),
    version=2,
)
TERMS = BillingTerms(
    "t1", {"api_calls": Metric("api_calls"), "storage_gb": Metric("storage_gb", MetricType.GAUGE, Aggregation.MAX)}
)
SUB = Subscription("s1", "t1", "pro", T0)
CLOSED = ClosedPeriod(SUB, PLAN, JANUARY, Fraction(1), False, "period_end")
USAGE = {"api_calls": Decimal("1500"), "storage_gb": Decimal("12.5")}


class Usage:
    def __init__(self, usage: Mapping[str, Decimal]) -> None:
        self.usage = usage

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        return [self.usage[r.metric_code] for r in requests]


def invoice(closed: ClosedPeriod = CLOSED, usage: Mapping[str, Decimal] = USAGE) -> Invoice:
    """The invoice InvoiceService finalizes for ``closed`` (a coupon, tax or credit would not matter)."""
    return InvoiceService(MemoryLedger(), Usage(usage), TERMS).close_period(closed, AT)


def rating(closed: ClosedPeriod, usage: Mapping[str, Decimal], at: datetime = AT) -> RatingResult:
    """A final rating of ``closed``, as the rating agent prices it."""
    return rate_closed(closed, usage, at)


SAME = [
    ("the same rating", CLOSED, USAGE, AT),
    ("quantities written otherwise", CLOSED, {"api_calls": Decimal("1500.000"), "storage_gb": Decimal("12.50")}, AT),
    ("rated at another instant", CLOSED, USAGE, AT + timedelta(days=3)),
]


@pytest.mark.parametrize(("closed", "usage", "at"), [case[1:] for case in SAME], ids=[case[0] for case in SAME])
def test_the_same_rating_is_a_redelivery(closed: ClosedPeriod, usage: dict[str, Decimal], at: datetime) -> None:
    assert rating_differences(invoice(), closed, rating(closed, usage, at)) == []


OTHER_PLAN = replace(PLAN, version=3)
CHEAPER = replace(PLAN, meters=(replace(PLAN.meters[0], unit_price=Decimal("0.0014")), PLAN.meters[1]))
DIFFERENT = [
    ("one more call", CLOSED, {**USAGE, "api_calls": Decimal("1501")}, ["items[0]"]),
    ("a trillionth more call", CLOSED, {**USAGE, "api_calls": Decimal("1500.000000000001")}, ["items[0]"]),
    ("more storage", CLOSED, {**USAGE, "storage_gb": Decimal("13")}, ["items[1]"]),
    ("another unit price", replace(CLOSED, plan=CHEAPER), USAGE, ["items[0]"]),
    ("another plan version", replace(CLOSED, plan=OTHER_PLAN), USAGE, ["base_fee"]),
    ("a shorter period", replace(CLOSED, period=Period(T0, T0 + timedelta(days=20))), USAGE, ["period"]),
    ("prorated", replace(CLOSED, share=Fraction(1, 2)), USAGE, ["base_fee", "items[0]"]),
    ("a trial", replace(CLOSED, is_trial=True), USAGE, ["base_fee"]),
    (
        "no overage allowed",
        replace(CLOSED, subscription=replace(SUB, allow_overage_billing=False)),
        USAGE,
        ["items[0]", "items[1]"],  # storage has no included units: none of it is billed now
    ),
]


@pytest.mark.parametrize(
    ("closed", "usage", "fields"), [case[1:] for case in DIFFERENT], ids=[case[0] for case in DIFFERENT]
)
def test_a_different_rating_is_told_with_the_field_at_fault(
    closed: ClosedPeriod, usage: dict[str, Decimal], fields: list[str]
) -> None:
    differences = rating_differences(invoice(), closed, rating(closed, usage))
    assert [field for field, _ in differences] == fields
    assert all(detail for _, detail in differences)


def test_the_detail_names_what_was_invoiced_and_what_is_rated_now() -> None:
    [(field, detail)] = rating_differences(invoice(), CLOSED, rating(CLOSED, {**USAGE, "api_calls": Decimal("1501")}))
    assert field == "items[0]"
    assert "api_calls" in detail and "1501" in detail and "1500" in detail


def test_a_different_quantity_of_the_same_amount_is_a_difference() -> None:
    """Within the included units both quantities cost nothing: still another rating."""
    few = {**USAGE, "api_calls": Decimal("900")}
    differences = rating_differences(invoice(usage=few), CLOSED, rating(CLOSED, {**few, "api_calls": Decimal("950")}))
    assert [field for field, _ in differences] == ["items[0]"]


def test_a_trial_invoice_compares_without_a_base_fee() -> None:
    trial = replace(CLOSED, is_trial=True)
    assert rating_differences(invoice(trial), trial, rating(trial, USAGE)) == []
    assert [f for f, _ in rating_differences(invoice(trial), CLOSED, rating(CLOSED, USAGE))] == ["base_fee"]


def test_a_redelivered_standalone_adjustment_rating_rates_its_invoice_as_billed() -> None:
    """Late usage of an ended subscription is invoiced on its own (ADJUSTMENT lines only): the
    rating of that invoice carries no usage of its own, so a redelivery differs in nothing."""
    from pathlib import Path

    from billing.simulate import load_scenario, simulate_in_memory
    from invoicing.engine.subscriptions import late_usage_period
    from tests.ratings import final_rating_of_usage

    case = Path(__file__).parents[1] / "scenarios" / "cases" / "28_late_usage_after_trial_expired.yaml"
    scenario = load_scenario(case)
    result = simulate_in_memory(scenario)
    adjustment = result.invoices[-1]
    assert adjustment.metadata["closed_by"] == "late_usage"
    assert adjustment.issued_at is not None
    closed = late_usage_period(result.cycles["tri"], adjustment.issued_at, scenario.grace_period)
    assert closed.period == adjustment.period
    terms = BillingTerms(scenario.tenant_id, {m.code: m for m in scenario.metrics})
    rating = final_rating_of_usage(closed, terms, {}, adjustment.issued_at)
    assert rating_differences(adjustment, closed, rating.result) == []
    regular = replace(closed, reason="period_end", share=Fraction(1))
    assert rating_differences(adjustment, regular, replace(rating.result, proration=Fraction(1))) != []
