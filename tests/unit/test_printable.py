"""An invoice's printable figures: each currency in its own minor digits with its symbol or code,
exact from integer minor units; the tax breakdown by name and rate; the period in the
subscription's calendar; only finalized invoices print."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.model import InvoiceLineItem, LineType
from invoicing.engine.printable import Customer, MoneyText, TenantProfile, printable_invoice
from invoicing.engine.tax import TaxRule
from rating.errors import InvalidValue
from rating.money import Money, minor_to_major
from rating.periods import Period

pytestmark = pytest.mark.unit
NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("locale", "amount", "currency", "text"),
    [
        ("en", 123456789, "USD", "$1,234,567.89"),
        ("en", -842, "USD", "-$8.42"),
        ("en", 5, "USD", "$0.05"),
        ("en", 123456789, "IDR", f"IDR{NBSP}123,456,789"),
        ("id_ID", 123456789, "IDR", f"Rp{NBSP}123.456.789"),
        ("id_ID", 0, "IDR", f"Rp{NBSP}0"),
        ("en", 42618, "BHD", f"BHD{NBSP}42.618"),
        ("en", 7, "BHD", f"BHD{NBSP}0.007"),
        ("de_DE", 123456, "EUR", f"1.234,56{NBSP}€"),
        ("en", 1000, "JPY", "¥1,000"),
    ],
)
def test_money_in_its_own_minor_digits_and_symbol(locale: str, amount: int, currency: str, text: str) -> None:
    assert MoneyText(locale).money(Money(amount, currency)) == text


@given(st.integers(min_value=-(10**17), max_value=10**17), st.sampled_from(["USD", "IDR", "BHD", "JPY", "CLF"]))
def test_money_text_reads_back_as_the_same_minor_units(amount: int, currency: str) -> None:
    """No float on the way: at 10^17 minor units a double would already have lost the last digit."""
    text = MoneyText("en").money(Money(amount, currency))
    digits = "".join(c for c in text if c.isdigit() or c in ".-")
    assert Decimal(digits) == minor_to_major(amount, currency)


def test_unit_prices_keep_every_digit_and_quantities_their_grouping() -> None:
    text = MoneyText("en")
    assert text.price(Decimal("0.000123456789"), "USD") == "$0.000123456789"
    assert text.price(Decimal("49"), "USD") == "$49.00"
    assert text.price(Decimal("5"), "BHD") == f"BHD{NBSP}5.000"
    assert text.number(Decimal("12345.5")) == "12,345.5"
    assert MoneyText("id_ID").number(Decimal("12345.5")) == "12.345,5"


def _invoice(currency: str, *, inclusive: bool = False, rules: tuple[TaxRule, ...] = ()) -> object:
    period = Period(datetime(2026, 1, 1, 17, tzinfo=UTC), datetime(2026, 2, 1, 17, tzinfo=UTC))
    tiers = {
        "included_units": "1000",
        "tier_1_units": "10000",
        "tier_1_unit_price": "0.002",
        "tier_1_flat_fee": "0",
        "tier_2_units": "1345.5",
        "tier_2_unit_price": "0.000123456789",
        "tier_2_flat_fee": "1",
    }
    charges = [
        InvoiceLineItem(LineType.RECURRING, "Pro", Money(4900, currency), Decimal(1), Decimal(49), None, {}),
        InvoiceLineItem(LineType.USAGE, "api_calls", Money(2117, currency), Decimal("12345.5"), None, "api", tiers),
    ]
    draft = compose_invoice(
        tenant_id="t1",
        subscription_id="sub_a",
        plan_code="pro",
        period=period,
        currency=currency,
        charges=charges,
        coupon=Coupon("WELCOME10", percent_off=Decimal(10), duration=CouponDuration.ONCE),
        tax_rules=rules or (TaxRule("ID", "PPN", Decimal(11)),),
        tax_inclusive=inclusive,
        credit_available=Money(1000, currency),
    )
    return finalize(draft, 7, datetime(2026, 2, 1, 18, tzinfo=UTC))


def test_printable_figures_of_a_finalized_invoice() -> None:
    invoice = _invoice("USD", rules=(TaxRule("ID", "PPN", Decimal(11)), TaxRule("ID", "PPnBM", Decimal("2.5"))))
    seller = TenantProfile("t1", "PT Contoh", "Jl. Sudirman 1\nJakarta", "01.234.567.8-901.000")
    # Jakarta (UTC+7): the period [Jan 1 17:00Z, Feb 1 17:00Z) is Jan 2 to Feb 1 local, midnight to midnight
    printed = printable_invoice(invoice, seller, Customer("sub_a", "Asia/Jakarta", "ID"))  # type: ignore[arg-type]
    assert (printed.invoice_number, printed.status) == ("INV-2026-000007", "PENDING")
    dates = (printed.period_start, printed.period_end, printed.issue_date)
    assert dates == ("Jan 2, 2026", "Feb 1, 2026", "Feb 2, 2026")
    assert printed.seller.address_lines == ("Jl. Sudirman 1", "Jakarta")
    assert printed.customer.name == "sub_a" and printed.customer.address_lines == ("Region ID",)
    assert [(line.quantity, line.unit_price, line.amount) for line in printed.lines] == [
        ("1", "$49.00", "$49.00"),
        ("12,345.5", "", "$21.17"),
    ]
    assert [line.tiered for line in printed.lines] == [False, True]
    assert printed.lines[1].details == (
        "1,000 included",
        "tier 1: 10,000 × $0.002",
        "tier 2: 1,345.5 × $0.000123456789 + $1.00",
    )
    # subtotal 7017; 10% off: 701.7 → 702; base 6315; PPN 11% 694.65 → 695; PPnBM 2.5% 157.875 → 158
    assert [(d.description, d.amount) for d in printed.discounts] == [("Coupon WELCOME10 (10% off)", "-$7.02")]
    assert [(t.label, t.amount) for t in printed.taxes] == [("PPN 11%", "$6.95"), ("PPnBM 2.5%", "$1.58")]
    assert (printed.subtotal, printed.discount_total, printed.tax_total, printed.total) == (
        "$70.17",
        "-$7.02",
        "$8.53",
        "$71.68",
    )
    assert (printed.credits_applied, printed.amount_paid, printed.amount_due) == ("-$10.00", "$0.00", "$61.68")


def test_a_tax_inclusive_invoice_says_its_tax_is_included() -> None:
    printed = printable_invoice(
        _invoice("IDR", inclusive=True),  # type: ignore[arg-type]
        TenantProfile("t1", "PT Contoh", locale="id_ID"),
        Customer("sub_a"),
    )
    # gross 7017 - 702 = 6315 rupiah; PPN is 6315 - 6315/1.11 = 625.81 → 626, inside the total
    assert [(t.label, t.amount, t.inclusive) for t in printed.taxes] == [("PPN 11% (included)", f"Rp{NBSP}626", True)]
    assert printed.tax_inclusive and printed.total == f"Rp{NBSP}6.315"
    # a period cut inside the local day prints its instants
    assert printed.period_start == "1 Jan 2026 17:00 UTC"


def test_a_late_usage_line_says_what_was_billed_before() -> None:
    late = {"period_start": "2026-01-01T00:00:00Z", "quantity": "1500", "billed_quantity": "1200"}
    line = InvoiceLineItem(
        LineType.ADJUSTMENT, "Late usage: api_calls", Money(60, "USD"), Decimal(300), None, "api", late
    )
    invoice = finalize(
        compose_invoice(
            tenant_id="t1",
            subscription_id="sub_a",
            plan_code="pro",
            period=Period(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
            currency="USD",
            charges=[line],
            coupon=None,
            tax_rules=(),
            tax_inclusive=False,
            credit_available=Money(0, "USD"),
        ),
        8,
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    printed = printable_invoice(invoice, TenantProfile.unnamed("t1"), Customer("sub_a"))
    assert printed.lines[0].details == ("1,500 now, 1,200 billed before",)
    assert (printed.lines[0].unit_price, printed.lines[0].tiered, printed.taxes) == ("", False, ())
    assert (printed.period_start, printed.period_end, printed.amount_due) == ("Feb 1, 2026", "Feb 28, 2026", "$0.60")


def test_a_draft_does_not_print() -> None:
    draft = compose_invoice(
        tenant_id="t1",
        subscription_id="sub_a",
        plan_code="pro",
        period=Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        currency="USD",
        charges=[],
        coupon=None,
        tax_rules=(),
        tax_inclusive=False,
        credit_available=Money(0, "USD"),
    )
    with pytest.raises(InvalidValue, match="invoice_number: only a finalized invoice"):
        printable_invoice(draft, TenantProfile.unnamed("t1"), Customer("sub_a"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "name: must not be empty"),
        ({"name": "x", "locale": "xx_NOPE"}, "locale: unknown locale 'xx_NOPE'"),
        ({"name": "x", "tax_id": "a\x00b"}, "tax_id: control character U+0000"),
        ({"name": "x", "address": "a" * 1001}, "address: at most 1000 characters"),
    ],
)
def test_a_bad_profile_names_its_field(fields: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidValue, match=re.escape(message)):
        TenantProfile("t1", **fields)
