"""``rating.results`` messages round-trip a FinalRating exactly (subscription, plan snapshot,
terms, usage, late usage), and a message that disagrees with itself is refused by field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from billing.rate import messages as rm
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.subscriptions import ClosedPeriod, Subscription
from invoicing.engine.tax import TaxRule
from invoicing.engine.terms import BillingTerms
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier, TierMode
from rating.errors import BillingError
from rating.late import LateUsage
from rating.money import Money
from rating.periods import BillingInterval, Period
from schemas import avro_codec
from tests.ratings import final_rating_of_usage

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)

PLAN = Plan(
    "pro",
    "IDR",
    Decimal("150000.00"),
    BillingInterval.MONTH,
    tax_inclusive=True,
    meters=(
        PlanMeter("api_calls", PricingModel.PER_UNIT, Decimal("0.015"), Decimal("1000")),
        PlanMeter(
            "storage_gb",
            PricingModel.TIERED,
            tier_mode=TierMode.GRADUATED,
            tiers=(Tier(Decimal("10"), Decimal("2000"), Decimal("50")), Tier(None, Decimal("1500.5"))),
        ),
        PlanMeter("seats", PricingModel.FLAT),
    ),
    name="Pro",
    version=3,
    metadata={"z": "1", "a": "2"},
)
TERMS = BillingTerms(
    "t1",
    {
        "api_calls": Metric("api_calls"),
        "storage_gb": Metric("storage_gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM, "GB"),
        "users": Metric("users", aggregation=Aggregation.UNIQUE_COUNT, field="user_id"),
        "unused": Metric("unused"),
    },
    (TaxRule("ID", "PPN", Decimal("11")), TaxRule("SG", "GST", Decimal("9"), is_default=True, is_active=False)),
    {
        "WELCOME": Coupon(
            "WELCOME", percent_off=Decimal("12.5"), duration=CouponDuration.REPEATING, duration_in_periods=2
        ),
        "OTHER": Coupon("OTHER", amount_off=Decimal("1000")),
    },
)
SUB = Subscription(
    "sub_1",
    "t1",
    "pro",
    T0 + timedelta(days=3, milliseconds=7),
    "Asia/Jakarta",
    region_code="ID",
    allow_overage_billing=False,
    trial_days=0,
    trial_balance=Decimal("250000.50"),
    has_payment_method=False,
    coupon_code="WELCOME",
)
CLOSED = ClosedPeriod(SUB, PLAN, Period(T0, T0 + timedelta(days=31)), Fraction(17, 31), False, "plan_change")
LATE = (
    LateUsage(Period(T0 - timedelta(days=31), T0), "api_calls", Decimal("12345.000000000001")),
    LateUsage(Period(T0 - timedelta(days=31), T0), "users", Decimal("4")),
)


def rating(**usage: str) -> rm.FinalRating:
    quantities = {"api_calls": Decimal("1500.5"), "storage_gb": Decimal("12.25")}
    quantities.update({k: Decimal(v) for k, v in usage.items()})
    return final_rating_of_usage(CLOSED, TERMS, quantities, T0 + timedelta(days=31, hours=1), LATE)


def test_a_final_rating_round_trips_exactly() -> None:
    original = rating()
    decoded = rm.read_rating_result(rm.write_rating_result(original))
    assert decoded == original
    assert decoded.closed.plan.metadata == PLAN.metadata  # not part of Plan equality
    assert decoded.closed.subscription.start_at == SUB.start_at
    assert decoded.late_periods == {T0 - timedelta(days=31)}
    assert decoded.usage == {"api_calls": Decimal("1500.5"), "storage_gb": Decimal("12.25")}
    assert [str(q) for q in decoded.usage.values()] == ["1500.5", "12.25"]  # exponents kept


def test_terms_are_trimmed_to_what_the_invoice_can_use() -> None:
    terms = rating().terms
    assert set(terms.metrics) == {"api_calls", "storage_gb", "users"}
    assert terms.coupons == {"WELCOME": TERMS.coupons["WELCOME"]}  # type: ignore[index]
    assert tuple(terms.tax_rules) == TERMS.tax_rules


def test_payment_terms_stay_out_of_the_message() -> None:
    """They are the payment worker's (read from the ledger), not the invoice's; the Avro record
    has no field for them and refuses unknown keys."""
    quantities = {"api_calls": Decimal("1500.5"), "storage_gb": Decimal("12.25")}
    paying = replace(TERMS, payment_terms=PaymentTerms(net_days=7, retry_days=(2,), cancel_after_days=3))
    original = final_rating_of_usage(CLOSED, paying, quantities, T0 + timedelta(days=31, hours=1), LATE)
    decoded = rm.read_rating_result(rm.write_rating_result(original))
    assert decoded == original and decoded.terms.payment_terms == PaymentTerms()


def test_a_trial_without_coupon_or_balance_round_trips() -> None:
    sub = replace(SUB, trial_days=14, trial_balance=None, coupon_code=None, region_code=None)
    closed = replace(CLOSED, subscription=sub, share=Fraction(0), is_trial=True, reason="trial_end")
    original = final_rating_of_usage(closed, TERMS, {}, T0 + timedelta(days=31))
    decoded = rm.read_rating_result(rm.write_rating_result(original))
    assert decoded == original
    assert decoded.terms.coupons == {} and decoded.late_usage == ()


def raw_of(original: rm.FinalRating) -> dict[str, Any]:
    return avro_codec.decode(rm.RATING_RESULT, rm.write_rating_result(original))


def reread(raw: dict[str, Any]) -> rm.FinalRating:
    return rm.read_rating_result(avro_codec.encode(rm.RATING_RESULT, raw))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda r: r["items"][0]["amount"].update(amount_minor=r["items"][0]["amount"]["amount_minor"] + 1),
            "items[0].amount",
        ),
        (lambda r: r["items"].pop(), "items"),
        (lambda r: r["items"][1].update(quantity="1e999999999999"), "items[1].quantity"),
        (lambda r: r["items"][1].update(quantity="NaN"), "items[1].quantity"),
        (lambda r: r["items"][1].update(quantity="0.0000000000001"), "items[1].quantity"),
        (
            lambda r: r.update(plan_snapshot=r["plan_snapshot"].replace('"150000.00"', '"1e99999999"')),
            "plan_snapshot.base_price",
        ),
        (lambda r: r.update(plan_version=2), "plan_snapshot"),
        (lambda r: r.update(plan_snapshot="{}"), "plan_snapshot"),
        (lambda r: r.update(subscription_id="sub_2"), "subscription.id"),
        (lambda r: r["subscription"].update(timezone="Mars/Olympus"), "subscription.timezone"),
        (lambda r: r.update(proration_denominator=0), "proration_denominator"),
        (lambda r: r.update(proration_numerator=2, proration_denominator=1), "proration_numerator"),
        (lambda r: r["terms"]["metrics"][0].update(aggregation="MEDIAN"), "terms.metrics[0]"),
        (lambda r: r["terms"]["tax_rules"][0].update(rate_percent="x"), "terms.tax_rules[0].rate_percent"),
        (lambda r: r["terms"]["coupons"][0].update(percent_off=None), "terms.coupons[0].percent_off"),
        (lambda r: r["terms"].update(tenant_id="t2"), "terms.tenant_id"),
        (lambda r: r["late_usage"].append(dict(r["late_usage"][0])), "late_usage[2]"),
        (lambda r: r.update(period_end=r["period_start"] - timedelta(days=1)), "period"),
    ],
)
def test_a_message_that_disagrees_with_itself_is_refused_by_field(change: Any, field: str) -> None:
    raw = raw_of(rating())
    change(raw)
    with pytest.raises(BillingError) as error:
        reread(raw)
    assert error.value.field == field


def test_bytes_that_are_no_rating_result_raise_wire_format_error() -> None:
    other = avro_codec.encode(
        "dead_letter.v1",
        {
            "reason": "x",
            "detail": "y",
            "original": b"",
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": 0,
            "failed_at": T0,
        },
    )
    for value in (other, b"", b"\x00\x00\x00\x02\x59\x02"):
        with pytest.raises(avro_codec.WireFormatError):
            rm.read_rating_result(value)


def test_sub_millisecond_instants_are_refused_rather_than_truncated() -> None:
    closed = replace(CLOSED, subscription=replace(SUB, start_at=T0 + timedelta(microseconds=1)))
    with pytest.raises(BillingError) as error:
        rm.write_rating_result(final_rating_of_usage(closed, TERMS, {}, T0 + timedelta(days=31)))
    assert error.value.field == "subscription.start_at"


def test_money_is_minor_units_with_currency() -> None:
    raw = raw_of(rating())
    item = rating().result.item("api_calls")
    assert item is not None and item.amount == Money(raw["items"][0]["amount"]["amount_minor"], "IDR")
    assert raw["items"][0]["amount"]["currency_code"] == "IDR"
