"""Tax: rules by region with defaults, exclusive by default, the tax part of an inclusive gross."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.engine.tax import TaxRule, rules_for, tax_amount, tax_lines
from rating.errors import InvalidValue
from rating.money import Money

pytestmark = pytest.mark.unit
D = Decimal

PPN = TaxRule("ID", "PPN", D(11), is_default=True)
GST = TaxRule("SG", "GST", D(9))
VAT = TaxRule("EU-DE", "VAT", D(19))
OLD = TaxRule("SG", "old GST", D(7), is_active=False)
RULES = [PPN, GST, VAT, OLD]


@pytest.mark.parametrize(
    ("region", "rules"),
    [("SG", [GST]), ("EU-DE", [VAT]), ("ID", [PPN]), ("US", [PPN]), (None, [PPN])],
)
def test_rules_for_region_else_defaults(region: str | None, rules: list[TaxRule]) -> None:
    assert rules_for(region, RULES) == rules


def test_no_default_means_no_tax() -> None:
    assert rules_for("US", [GST, VAT]) == []


@pytest.mark.parametrize(
    ("base", "rule", "inclusive", "tax"),
    [
        (Money(10_000, "USD"), GST, False, 900),
        (Money(5, "USD"), PPN, False, 1),  # 0.55 → 1
        (Money(4, "USD"), PPN, False, 0),  # 0.44 → 0
        (Money(50, "USD"), TaxRule("X", "X", D(1)), False, 1),  # 0.5 → 1: half-up
        (Money(111_000, "IDR"), PPN, True, 11_000),
        (Money(10_900, "USD"), GST, True, 900),
        (Money(100, "USD"), VAT, True, 16),  # 100 − 100/1.19 = 15.97
        (Money(1000, "BHD"), TaxRule("BH", "VAT", D(10)), False, 100),
        (Money(0, "USD"), VAT, False, 0),
    ],
)
def test_tax_amount(base: Money, rule: TaxRule, inclusive: bool, tax: int) -> None:
    assert tax_amount(base, rule, inclusive) == Money(tax, base.currency)


def test_one_line_per_rule_on_the_same_base() -> None:
    lines = tax_lines(Money(10_000, "USD"), [GST, VAT], inclusive=False)
    assert [(line.description, line.amount.amount, line.unit_price) for line in lines] == [
        ("GST 9%", 900, D(9)),
        ("VAT 19%", 1900, D(19)),
    ]
    assert lines[0].metadata == {"region_code": "SG", "rate_percent": "9", "inclusive": "false"}


@pytest.mark.parametrize("rate", [D(-1), D("100.01")])
def test_rates_outside_0_to_100_are_rejected(rate: Decimal) -> None:
    with pytest.raises(InvalidValue) as caught:
        TaxRule("X", "X", rate)
    assert caught.value.field == "rate_percent"
