"""Each pricing model, table-driven, with tier edges; rate_meter's included units, overage and proration."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from rating.catalog import PlanMeter, PricingModel, Tier, TierMode
from rating.errors import InvalidValue
from rating.pricing import price
from rating.rate import rate_meter

pytestmark = pytest.mark.unit

D = Decimal
TIERS = (Tier(D(100), D("0.10")), Tier(D(1000), D("0.05")), Tier(None, D("0.01")))
GRADUATED = PlanMeter("m", PricingModel.TIERED, tier_mode=TierMode.GRADUATED, tiers=TIERS)
VOLUME = PlanMeter("m", PricingModel.TIERED, tier_mode=TierMode.VOLUME, tiers=TIERS)
FEES = (Tier(D(10), D(1), D(5)), Tier(None, D("0.5"), D(20)))


@pytest.mark.parametrize(
    ("q", "amount"),
    [
        (0, 0),
        (1, Fraction(1, 10)),
        (100, 10),  # up_to is inclusive: unit 100 is still in tier 1
        (Fraction(10001, 100), 10 + Fraction(5, 100) * Fraction(1, 100)),  # 100.01
        (101, Fraction(1005, 100)),
        (1000, 10 + 45),
        (1001, 55 + Fraction(1, 100)),
        (5000, 55 + 40),
    ],
)
def test_graduated_prices_each_unit_in_its_tier(q: Fraction | int, amount: Fraction | int) -> None:
    assert price(GRADUATED, Fraction(q)).amount == amount
    assert price(GRADUATED, Fraction(q)).unit_price is None


def test_graduated_breakdown_names_each_tier() -> None:
    tiers = price(GRADUATED, Fraction(1500)).tiers
    assert [(t.tier, t.units, t.unit_price, t.amount) for t in tiers] == [
        (0, 100, D("0.10"), 10),
        (1, 900, D("0.05"), 45),
        (2, 500, D("0.01"), 5),
    ]


@pytest.mark.parametrize(
    ("q", "amount", "unit_price"),
    [
        (0, 0, None),  # no billable unit, no charge
        (1, Fraction(1, 10), D("0.10")),
        (100, 10, D("0.10")),  # inclusive bound
        (101, Fraction(505, 100), D("0.05")),  # every unit at the reached tier
        (1000, 50, D("0.05")),
        (1001, Fraction(1001, 100), D("0.01")),
    ],
)
def test_volume_prices_every_unit_at_the_reached_tier(
    q: int, amount: Fraction | int, unit_price: Decimal | None
) -> None:
    charge = price(VOLUME, Fraction(q))
    assert (charge.amount, charge.unit_price) == (amount, unit_price)


@pytest.mark.parametrize(
    ("mode", "q", "amount"),
    [
        (TierMode.GRADUATED, 0, 0),  # no unit reaches tier 1: no fee
        (TierMode.GRADUATED, Fraction(1, 2), Fraction(1, 2) + 5),
        (TierMode.GRADUATED, 10, 10 + 5),
        (TierMode.GRADUATED, 11, 15 + Fraction(1, 2) + 20),  # each reached tier's fee once
        (TierMode.VOLUME, 0, 0),
        (TierMode.VOLUME, 10, 10 + 5),
        (TierMode.VOLUME, 11, Fraction(11, 2) + 20),  # only the reached tier's fee
    ],
)
def test_tier_flat_fees(mode: TierMode, q: Fraction | int, amount: Fraction | int) -> None:
    meter = PlanMeter("m", PricingModel.TIERED, tier_mode=mode, tiers=FEES)
    assert price(meter, Fraction(q)).amount == amount


@pytest.mark.parametrize(
    ("q", "packages"),
    [(0, 0), (Fraction(1, 1000), 1), (1, 1), (100, 1), (Fraction(10001, 100), 2), (200, 2), (201, 3)],
)
def test_package_rounds_packages_up(q: Fraction | int, packages: int) -> None:
    meter = PlanMeter("m", PricingModel.PACKAGE, unit_price=D("2.50"), package_size=D(100))
    charge = price(meter, Fraction(q))
    assert charge.amount == packages * Fraction(5, 2)
    assert charge.unit_price == D("2.50")


def test_package_with_a_fractional_size() -> None:
    meter = PlanMeter("m", PricingModel.PACKAGE, unit_price=D(1), package_size=D("0.5"))
    assert price(meter, Fraction(3, 2)).amount == 3
    assert price(meter, Fraction(8, 5)).amount == 4


def test_per_unit_and_overage_price() -> None:
    plain = PlanMeter("m", PricingModel.PER_UNIT, unit_price=D("0.002"))
    assert price(plain, Fraction(1500)).amount == 3
    assert price(plain, Fraction(1500)).unit_price == D("0.002")
    over = PlanMeter("m", PricingModel.PER_UNIT, unit_price=D("0.002"), overage_unit_price=D("0.003"))
    assert price(over, Fraction(1500)).amount == Fraction(9, 2)
    assert price(over, Fraction(1500)).unit_price == D("0.003")


def test_flat_meters_charge_nothing_for_usage() -> None:
    meter = PlanMeter("m", PricingModel.FLAT, unit_price=D(5))
    assert price(meter, Fraction(10**6)).amount == 0
    assert not meter.is_metered


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pricing_model": PricingModel.TIERED}, "tiers"),
        ({"pricing_model": PricingModel.TIERED, "tiers": (Tier(D(10), D(1)),)}, "tiers[0].up_to"),
        ({"pricing_model": PricingModel.TIERED, "tiers": (Tier(None, D(1)), Tier(None, D(1)))}, "tiers[0].up_to"),
        (
            {"pricing_model": PricingModel.TIERED, "tiers": (Tier(D(10), D(1)), Tier(D(10), D(1)), Tier(None, D(1)))},
            "tiers[1].up_to",
        ),
        ({"pricing_model": PricingModel.PACKAGE}, "package_size"),
        ({"pricing_model": PricingModel.PACKAGE, "package_size": D(0)}, "package_size"),
    ],
)
def test_bad_meters_are_rejected_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        PlanMeter("m", **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_rate_meter_included_units_are_free_and_rounded_once() -> None:
    meter = PlanMeter("m", PricingModel.PER_UNIT, unit_price=D("0.0033"), included_units=D(1000))
    item = rate_meter(meter, D(1500), "USD")
    assert item.billable_units == 500
    assert item.amount.amount == 165  # 500 × 0.0033 = 1.65
    under = rate_meter(meter, D(999), "USD")
    assert (under.billable_units, under.amount.amount) == (0, 0)


def test_rate_meter_rounds_half_up_to_the_currency() -> None:
    meter = PlanMeter("m", PricingModel.PER_UNIT, unit_price=D("0.0025"))
    assert rate_meter(meter, D(2), "USD").amount.amount == 1  # 0.005 → 1 cent
    assert rate_meter(meter, D(2), "BHD").amount.amount == 5  # 0.005 BHD = 5 fils
    meter_idr = PlanMeter("m", PricingModel.PER_UNIT, unit_price=D("12.5"))
    assert rate_meter(meter_idr, D(1), "IDR").amount.amount == 13


def test_rate_meter_prorates_included_units_exactly() -> None:
    meter = PlanMeter("m", PricingModel.PER_UNIT, unit_price=D(1), included_units=D(100))
    item = rate_meter(meter, D(50), "USD", proration=Fraction(1, 3))
    assert item.included_units == Fraction(100, 3)
    assert item.billable_units == Fraction(50) - Fraction(100, 3)
    assert item.amount.amount == 1667  # 16.666… rounded once


def test_rate_meter_without_overage_reports_unbilled_units() -> None:
    meter = PlanMeter("m", PricingModel.TIERED, included_units=D(10), tiers=TIERS)
    item = rate_meter(meter, D(25), "USD", allow_overage=False)
    assert (item.billable_units, item.unbilled_units, item.amount.amount) == (0, 15, 0)
    assert item.metadata()["unbilled_units"] == "15"


def test_rating_metadata_carries_the_tier_breakdown() -> None:
    item = rate_meter(GRADUATED, D(150), "USD")
    assert item.metadata() == {
        "included_units": "0",
        "billable_units": "150",
        "unbilled_units": "0",
        "tier_1_units": "100",
        "tier_1_unit_price": "0.1",
        "tier_1_flat_fee": "0",
        "tier_1_amount": "10",
        "tier_2_units": "50",
        "tier_2_unit_price": "0.05",
        "tier_2_flat_fee": "0",
        "tier_2_amount": "2.5",
    }
