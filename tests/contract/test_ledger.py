"""One contract for the Ledger port, run on the memory ledger and on PostgreSQL: transactions
commit or vanish whole, numbering is gapless per tenant, one invoice per (subscription, period),
and everything stored comes back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import create_engine

from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.model import Invoice, InvoiceLineItem, LineType
from invoicing.engine.tax import TaxRule
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import BilledUsage, Ledger, OutboxMessage
from rating.catalog import Plan, PlanMeter, PricingModel, Tier, TierMode
from rating.errors import InvalidValue
from rating.money import Money
from rating.periods import BillingInterval, Period

pytestmark = pytest.mark.contract

T0 = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
def ledger(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        yield MemoryLedger()
        return
    engine = create_engine(request.getfixturevalue("pg_url"))
    yield PostgresLedger(engine)
    engine.dispose()


def invoice(sub: str = "s1", start: datetime = T0, tenant: str = "t1", sequence: int | None = 1) -> Invoice:
    charges = [
        InvoiceLineItem(LineType.RECURRING, "Pro plan", Money(4900, "USD")),
        InvoiceLineItem(
            LineType.USAGE,
            "api_calls: 12,345.5 × tiers",
            Money(1234, "USD"),
            Decimal("12345.500000000001"),
            Decimal("0.000123456789"),
            "api_calls",
            {"tier": "2"},
        ),
    ]
    draft = compose_invoice(
        tenant_id=tenant,
        subscription_id=sub,
        plan_code="pro",
        period=Period(start, start + timedelta(days=28)),
        currency="USD",
        charges=charges,
        coupon=Coupon("C10", percent_off=Decimal(10), duration=CouponDuration.FOREVER),
        tax_rules=[TaxRule("ID", "PPN", Decimal(11))],
        tax_inclusive=False,
        credit_available=Money(500, "USD"),
    )
    return draft if sequence is None else finalize(draft, sequence, start + timedelta(days=28, hours=1))


def test_an_invoice_comes_back_exactly(ledger: Ledger) -> None:
    original = invoice()
    with ledger.session() as s:
        s.add_invoice(original)
    with ledger.session() as s:
        found = s.find_invoice("s1", T0)
        listed = s.list_invoices("t1")
    assert found == original and listed == [original]
    assert found is not None and found.line_items[1].metadata == {"tier": "2"}
    assert found.issued_at == original.issued_at


def test_one_invoice_per_subscription_and_period(ledger: Ledger) -> None:
    with ledger.session() as s:
        s.add_invoice(invoice())
    with pytest.raises(InvalidValue) as error, ledger.session() as s:
        s.add_invoice(invoice(sequence=2))
    assert error.value.field == "billing_period_start"
    with ledger.session() as s:
        assert len(s.list_invoices("t1")) == 1


def test_numbering_is_gapless_per_tenant_and_a_rollback_gives_its_number_back(ledger: Ledger) -> None:
    with ledger.session() as s:
        assert [s.next_invoice_sequence("t1"), s.next_invoice_sequence("t1"), s.next_invoice_sequence("t2")] == [
            1,
            2,
            1,
        ]
    with pytest.raises(RuntimeError), ledger.session() as s:
        assert s.next_invoice_sequence("t1") == 3
        raise RuntimeError("crash before commit")
    with ledger.session() as s:
        assert s.next_invoice_sequence("t1") == 3


def test_a_rolled_back_session_leaves_nothing(ledger: Ledger) -> None:
    note = CreditNote("s1", CreditType.BALANCE, Money(700, "USD"), T0, "goodwill")
    with pytest.raises(RuntimeError), ledger.session() as s:
        s.add_invoice(invoice())
        s.add_credit_note(note)
        s.add_outbox(OutboxMessage("invoice.finalized", "s1", {"n": 1}))
        s.save_plan("t1", Plan("pro", "USD", Decimal(49)))
        raise RuntimeError("crash")
    with ledger.session() as s:
        assert s.list_invoices("t1") == []
        assert s.credit_balance("s1", "USD") == Money(0, "USD")
        assert s.get_plan("t1", "pro") is None


def test_credit_balance_is_carried_and_never_overdrawn(ledger: Ledger) -> None:
    with ledger.session() as s:
        s.add_credit_note(CreditNote("s1", CreditType.BALANCE, Money(700, "USD"), T0, "goodwill"))
        s.add_credit_note(CreditNote("s1", CreditType.REFUND, Money(900, "USD"), T0, "refund, not a balance"))
        s.add_credit_note(CreditNote("s1", CreditType.BALANCE, Money(5, "EUR"), T0))
        s.use_credit("s1", Money(300, "USD"), "INV-1")
    with ledger.session() as s:
        assert s.credit_balance("s1", "USD") == Money(400, "USD")
        assert s.credit_balance("s1", "EUR") == Money(5, "EUR")
        with pytest.raises(InvalidValue):
            s.use_credit("s1", Money(401, "USD"), "INV-2")


def test_billed_usage_is_replaced_by_key(ledger: Ledger) -> None:
    row = BilledUsage(
        "s1",
        T0,
        T0 + timedelta(days=28),
        "api_calls",
        Decimal("10.5"),
        Money(99, "USD"),
        "pro",
        2,
        Fraction(1, 3),
        False,
    )
    with ledger.session() as s:
        s.record_billed_usage(row)
        s.record_billed_usage(_replace(row, quantity=Decimal("11")))
    with ledger.session() as s:
        assert s.billed_usage("s1") == [_replace(row, quantity=Decimal("11"))]


def _replace(row: BilledUsage, **changes: Any) -> BilledUsage:
    from dataclasses import replace

    return replace(row, **changes)


def test_plan_snapshots_by_version(ledger: Ledger) -> None:
    tiers = (Tier(Decimal(100), Decimal("0.000000000001"), Decimal("1.5")), Tier(None, Decimal("0.5")))
    v1 = Plan(
        "pro",
        "IDR",
        Decimal(350000),
        BillingInterval.YEAR,
        True,
        (PlanMeter("calls", PricingModel.TIERED, tier_mode=TierMode.VOLUME, tiers=tiers),),
        "Pro",
        1,
        {"a": "b"},
    )
    v2 = Plan("pro", "IDR", Decimal(400000), version=2)
    with ledger.session() as s:
        s.save_plan("t1", v1)
        s.save_plan("t1", v2)
    with ledger.session() as s:
        assert s.get_plan("t1", "pro") == v2
        found = s.get_plan("t1", "pro", 1)
        assert found == v1 and found is not None and found.metadata == {"a": "b"}
        assert s.get_plan("t2", "pro") is None


def test_discounted_invoices_are_counted(ledger: Ledger) -> None:
    with ledger.session() as s:
        s.add_invoice(invoice())
        s.add_invoice(invoice(start=T0 + timedelta(days=28), sequence=2))
        s.add_invoice(invoice(sub="s2", sequence=3))
    with ledger.session() as s:
        assert s.discounted_invoice_count("s1") == 2
        assert [i.subscription_id for i in s.list_invoices("t1", "s2")] == ["s2"]
