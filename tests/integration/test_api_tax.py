"""TaxService over the wire: a tenant's rules as its terms hold them, and CalculateTax equal to the
TAX lines the engine puts on an invoice (the region's active rules, else the default; exclusive
or the part of a tax-inclusive gross, rounded half-up)."""

from __future__ import annotations

import grpc
import pytest

from schemas.generated.smallbiznis.common.v1.money_pb2 import Money
from schemas.generated.smallbiznis.tax.v1 import tax_pb2 as T
from schemas.generated.smallbiznis.tax.v1 import tax_pb2_grpc
from tests.api_harness import Api, status_of

pytestmark = pytest.mark.integration


def stub(api: Api) -> tax_pb2_grpc.TaxServiceStub:
    return tax_pb2_grpc.TaxServiceStub(api.channel)  # type: ignore[no-untyped-call]


def test_list_tax_rules_all_or_by_region(api: Api) -> None:
    rules = stub(api).ListTaxRules(T.ListTaxRulesRequest(), metadata=api.auth()).tax_rules
    assert [(r.id, r.rate_percent, r.is_default, r.is_active) for r in rules] == [
        ("ID/PPN", "11", True, True),
        ("SG/GST", "9", False, True),
        ("EU-DE/VAT", "19", False, False),
    ]
    sg = stub(api).ListTaxRules(T.ListTaxRulesRequest(region_code="SG"), metadata=api.auth()).tax_rules
    assert [r.id for r in sg] == ["SG/GST"]
    assert stub(api).ListTaxRules(T.ListTaxRulesRequest(region_code="XX"), metadata=api.auth()).tax_rules == []


@pytest.mark.parametrize(
    ("region", "country", "inclusive", "units", "tax", "rule"),
    [
        ("SG", "", False, 10_005, 900, "SG/GST"),  # 900.45 → 900
        ("", "SG", False, 10_050, 905, "SG/GST"),  # 904.5 → 905, half-up; the country when no region
        ("ID", "", False, 8_417, 926, "ID/PPN"),
        ("EU-DE", "", False, 10_000, 1_100, "ID/PPN"),  # the region's rule is inactive: the default applies
        ("", "", False, 10_000, 1_100, "ID/PPN"),
        ("SG", "", True, 10_900, 900, "SG/GST"),  # the part of the gross: 10900 − 10900 / 1.09
    ],
)
def test_calculate_tax_is_the_engines_tax(
    api: Api, region: str, country: str, inclusive: bool, units: int, tax: int, rule: str
) -> None:
    request = T.TaxCalculationRequest(
        subtotal=Money(units=units, currency_code="USD"), region=region, country=country, tax_inclusive=inclusive
    )
    answer = stub(api).CalculateTax(request, metadata=api.auth())
    assert (answer.tax.units, answer.tax.currency_code) == (tax, "USD")
    assert [(line.tax_rule_id, line.amount.units) for line in answer.lines] == [(rule, tax)]


def test_calculate_tax_in_a_zero_exponent_currency_and_bad_subtotals(api: Api) -> None:
    request = T.TaxCalculationRequest(subtotal=Money(units=150_000, currency_code="IDR"), region="ID")
    assert stub(api).CalculateTax(request, metadata=api.auth()).tax.units == 16_500
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(stub(api).CalculateTax, T.TaxCalculationRequest(), metadata=api.auth()) == (
        invalid,
        "subtotal: is required",
    )
    for money, field in [
        (Money(units=1, currency_code="XXQ"), "subtotal.currency_code"),
        (Money(units=1), "subtotal.currency_code"),
        (Money(units=-1, currency_code="USD"), "subtotal.units"),
    ]:
        code, details = status_of(stub(api).CalculateTax, T.TaxCalculationRequest(subtotal=money), metadata=api.auth())
        assert (code, details.split(":")[0]) == (invalid, field)
    assert status_of(stub(api).ListTaxRules, T.ListTaxRulesRequest())[0] == grpc.StatusCode.UNAUTHENTICATED
