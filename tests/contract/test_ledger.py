"""One contract for the Ledger port, run on the memory ledger and on PostgreSQL: transactions
commit or vanish whole, numbering is gapless per tenant, one invoice per (subscription, period),
and everything stored comes back exactly — every field, metadata included (it is left out of the
values' ``==``), decimals with their scale, instants in UTC; a subscription's revision history
grows with its changes, in their transactions.

PostgreSQL databases of these tests run with a non-UTC ``TimeZone`` (tests/conftest.py), so an
adapter that hands back server-zone instants fails here."""

from __future__ import annotations

from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select

from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.model import Invoice, InvoiceLineItem, LineType
from invoicing.engine.subscriptions import Lifecycle, Subscription, SubscriptionStatus
from invoicing.engine.tax import TaxRule
from invoicing.engine.terms import BillingTerms
from invoicing.ledger import tables
from invoicing.ledger.json_codec import terms_record_from_json, terms_to_json
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import BilledUsage, Ledger, OutboxMessage, TermsRecord
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier, TierMode
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


def outbox(ledger: Ledger) -> list[OutboxMessage]:
    """What the ledger committed to its outbox, oldest first (read outside the port: a relay's view)."""
    if isinstance(ledger, MemoryLedger):
        return list(ledger.state.outbox)
    assert isinstance(ledger, PostgresLedger)
    with ledger.engine.connect() as connection:
        rows = connection.execute(select(tables.outbox).order_by(tables.outbox.c.id)).all()
    return [OutboxMessage(row.topic, row.key, row.payload) for row in rows]


def exactly(value: Any) -> str:
    """Every field, metadata included, in a form where Decimal('1.50') ≠ Decimal('1.5') and a
    +07:00 instant ≠ the same instant in UTC."""
    return repr(astuple(value))


def invoice(
    sub: str = "s1", start: datetime = T0, tenant: str = "t1", sequence: int | None = 1, coupon: bool = True
) -> Invoice:
    charges = [
        InvoiceLineItem(LineType.RECURRING, "Pro plan — “annual” 'quoted'", Money(4900, "USD")),
        InvoiceLineItem(
            LineType.USAGE,
            "api_calls: 12,345.5 × tiers",
            Money(1234, "USD"),
            Decimal("12345.500000000001"),
            Decimal("0.000123456789"),
            "api_calls",
            {"tier": "2", "breakdown": "100 × 0.000000000001 + 12245.500000000001 × 0.5", "ünï": "☃"},
        ),
        InvoiceLineItem(LineType.USAGE, "storage", Money(10, "USD"), Decimal("1.50"), Decimal("0.100"), "storage"),
    ]
    draft = compose_invoice(
        tenant_id=tenant,
        subscription_id=sub,
        plan_code="pro",
        period=Period(start, start + timedelta(days=28)),
        currency="USD",
        charges=charges,
        coupon=Coupon("C10", percent_off=Decimal(10), duration=CouponDuration.FOREVER) if coupon else None,
        tax_rules=[TaxRule("ID", "PPN", Decimal(11))],
        tax_inclusive=False,
        credit_available=Money(500, "USD"),
    )
    draft = replace(draft, metadata={"closed_by": "period_end", "rated_at": "2026-02-28T18:00:00Z"})
    return draft if sequence is None else finalize(draft, sequence, start + timedelta(days=28, hours=1, microseconds=7))


def test_an_invoice_comes_back_exactly(ledger: Ledger) -> None:
    original = invoice()
    draft = invoice(sub="s2", sequence=None)
    huge = compose_invoice(  # near the top of BIGINT, in a currency without minor units
        tenant_id="t1",
        subscription_id="s3",
        plan_code="enterprise",
        period=Period(T0, T0 + timedelta(days=365)),
        currency="IDR",
        charges=[InvoiceLineItem(LineType.RECURRING, "Enterprise", Money(9_000_000_000_000_000_000, "IDR"))],
        coupon=None,
        tax_rules=[],
        tax_inclusive=False,
        credit_available=Money(0, "IDR"),
    )
    with ledger.session() as s:
        for one in (original, draft, huge):
            s.add_invoice(one)
    with ledger.session() as s:
        found = [s.find_invoice(one.subscription_id, T0) for one in (original, draft, huge)]
        listed = s.list_invoices("t1")
    assert [exactly(one) for one in found] == [exactly(one) for one in (original, draft, huge)]
    assert [exactly(one) for one in listed] == [exactly(one) for one in (original, draft, huge)]
    assert found[0] is not None and found[0].line_items[1].metadata["ünï"] == "☃"
    assert found[0].issued_at is not None and found[0].issued_at.tzinfo is UTC and found[0].period.start.tzinfo is UTC
    assert found[1] is not None and (found[1].invoice_number, found[1].issued_at) == (None, None)


def test_find_invoice_is_by_subscription_and_exact_period_start(ledger: Ledger) -> None:
    with ledger.session() as s:
        s.add_invoice(invoice())
    with ledger.session() as s:
        assert s.find_invoice("s1", T0) is not None
        assert s.find_invoice("s1", T0.astimezone(ZoneInfo("Asia/Jakarta"))) is not None
        assert s.find_invoice("s1", T0 + timedelta(microseconds=1)) is None
        assert s.find_invoice("s2", T0) is None


def test_one_invoice_per_subscription_and_period(ledger: Ledger) -> None:
    with ledger.session() as s:
        s.add_invoice(invoice())
    with pytest.raises(InvalidValue) as error, ledger.session() as s:
        s.add_invoice(invoice(sequence=2))
    assert error.value.field == "billing_period_start"
    with ledger.session() as s:
        assert [i.invoice_number for i in s.list_invoices("t1")] == ["INV-2026-000001"]


def test_a_refused_invoice_leaves_the_session_usable(ledger: Ledger) -> None:
    with ledger.session() as s:
        s.add_invoice(invoice())
        with pytest.raises(InvalidValue):
            s.add_invoice(invoice(sequence=2))
        s.add_invoice(invoice(start=T0 + timedelta(days=28), sequence=2))
    with ledger.session() as s:
        assert [i.invoice_number for i in s.list_invoices("t1")] == ["INV-2026-000001", "INV-2026-000002"]


def test_numbering_is_gapless_per_tenant_and_a_rollback_gives_its_number_back(ledger: Ledger) -> None:
    with ledger.session() as s:
        taken = [s.next_invoice_sequence("t1"), s.next_invoice_sequence("t1"), s.next_invoice_sequence("t2")]
    assert taken == [1, 2, 1]
    with pytest.raises(RuntimeError), ledger.session() as s:
        assert s.next_invoice_sequence("t1") == 3
        assert s.next_invoice_sequence("t1") == 4
        raise RuntimeError("crash before commit")
    with ledger.session() as s:
        assert s.next_invoice_sequence("t1") == 3
        assert s.next_invoice_sequence("t2") == 2
        assert s.next_invoice_sequence("t3") == 1


def test_a_rolled_back_session_leaves_nothing(ledger: Ledger) -> None:
    usage = BilledUsage(
        "s1", T0, T0 + timedelta(days=28), "calls", Decimal(1), Money(1, "USD"), "pro", 1, Fraction(1), True
    )
    with ledger.session() as s:
        s.add_credit_note("t1", CreditNote("s1", CreditType.BALANCE, Money(100, "USD"), T0))
    with pytest.raises(RuntimeError), ledger.session() as s:
        s.next_invoice_sequence("t1")
        s.add_invoice(invoice())
        s.add_credit_note("t1", CreditNote("s1", CreditType.BALANCE, Money(700, "USD"), T0, "goodwill"))
        s.use_credit("s1", Money(800, "USD"), "INV-2026-000001")
        s.record_billed_usage(usage)
        s.save_plan("t1", Plan("pro", "USD", Decimal(49)))
        s.add_outbox(OutboxMessage("invoice.finalized", "s1", {"n": 1}))
        assert s.credit_balance("s1", "USD") == Money(0, "USD")  # the session sees its own work
        assert s.find_invoice("s1", T0) is not None and s.get_plan("t1", "pro") is not None
        raise RuntimeError("crash")
    with ledger.session() as s:
        assert s.list_invoices("t1") == [] and s.find_invoice("s1", T0) is None
        assert s.credit_balance("s1", "USD") == Money(100, "USD")
        assert s.billed_usage("s1") == []
        assert s.get_plan("t1", "pro") is None
        assert s.next_invoice_sequence("t1") == 1
    assert outbox(ledger) == []


def test_a_batch_commits_its_sessions_at_its_end_and_a_failed_session_in_it_alone_rolls_back(
    ledger: Ledger,
) -> None:
    with ledger.batch([("s1", T0), ("s2", T0)]):
        with ledger.session() as s:
            assert s.next_invoice_sequence("t1") == 1
            s.add_invoice(invoice())
            s.add_outbox(OutboxMessage("invoice.finalized", "s1", {"n": 1}))
        with pytest.raises(RuntimeError), ledger.session() as s:
            assert s.next_invoice_sequence("t1") == 2
            s.add_invoice(invoice(sub="s2", sequence=2))
            s.add_outbox(OutboxMessage("invoice.finalized", "s2", {"n": 2}))
            raise RuntimeError("this session fails")
        with ledger.session() as s:
            assert s.find_invoice("s1", T0) is not None and s.find_invoice("s2", T0) is None
            assert s.next_invoice_sequence("t1") == 2  # the failed session gave its number back
    with ledger.session() as s:
        assert [i.subscription_id for i in s.list_invoices("t1")] == ["s1"]
        assert s.next_invoice_sequence("t1") == 3
    assert outbox(ledger) == [OutboxMessage("invoice.finalized", "s1", {"n": 1})]


def test_a_batch_that_raises_commits_nothing_and_batches_do_not_nest(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError, match="crash"), ledger.batch():
        with ledger.session() as s:
            assert s.next_invoice_sequence("t1") == 1
            s.add_invoice(invoice())
            s.add_outbox(OutboxMessage("invoice.finalized", "s1", {"n": 1}))
        raise RuntimeError("crash before the batch commits")
    with ledger.session() as s:
        assert s.list_invoices("t1") == [] and s.next_invoice_sequence("t1") == 1
    assert outbox(ledger) == []
    with pytest.raises(RuntimeError, match="nest"), ledger.batch(), ledger.batch():
        pass


def test_the_outbox_commits_with_the_change_it_announces(ledger: Ledger) -> None:
    first = OutboxMessage("invoice.finalized", "s1", {"invoice": {"total": "49.00", "lines": [1, 2]}, "ü": None})
    second = OutboxMessage("invoice.finalized", "s2", {"n": 2})
    with ledger.session() as s:
        s.add_invoice(invoice())
        s.add_outbox(first)
    with pytest.raises(InvalidValue), ledger.session() as s:
        s.add_outbox(OutboxMessage("invoice.finalized", "s1", {"duplicate": True}))
        s.add_invoice(invoice(sequence=2))  # refused: the whole finalization rolls back, its event too
    with ledger.session() as s:
        s.add_outbox(second)
    assert outbox(ledger) == [first, second]


def test_credit_balance_is_carried_and_never_overdrawn(ledger: Ledger) -> None:
    with ledger.session() as s:
        assert s.credit_balance("s1", "USD") == Money(0, "USD")
        s.add_credit_note("t1", CreditNote("s1", CreditType.BALANCE, Money(700, "USD"), T0, "goodwill"))
        s.add_credit_note("t1", CreditNote("s1", CreditType.REFUND, Money(900, "USD"), T0, "refund, not a balance"))
        s.add_credit_note("t1", CreditNote("s1", CreditType.ADJUSTMENT, Money(900, "USD"), T0, "", "INV-2026-000001"))
        s.add_credit_note("t1", CreditNote("s1", CreditType.BALANCE, Money(5, "EUR"), T0))
        s.add_credit_note("t1", CreditNote("s2", CreditType.BALANCE, Money(50, "USD"), T0))
        s.use_credit("s1", Money(300, "USD"), "INV-2026-000001")
    with ledger.session() as s:
        assert s.credit_balance("s1", "USD") == Money(400, "USD")
        assert s.credit_balance("s1", "EUR") == Money(5, "EUR")
        assert s.credit_balance("s2", "USD") == Money(50, "USD")
        with pytest.raises(InvalidValue) as error:
            s.use_credit("s1", Money(401, "USD"), "INV-2026-000002")
        assert error.value.field == "credits_applied"
        s.use_credit("s1", Money(400, "USD"), "INV-2026-000002")
        assert s.credit_balance("s1", "USD") == Money(0, "USD")
    with ledger.session() as s:
        assert s.credit_balance("s1", "USD") == Money(0, "USD")
        s.add_credit_note("t1", CreditNote("s1", CreditType.BALANCE, Money(1, "USD"), T0))
        assert s.credit_balance("s1", "USD") == Money(1, "USD")


def test_billed_usage_is_replaced_by_key_and_listed_by_period_then_metric(ledger: Ledger) -> None:
    row = BilledUsage(
        "s1",
        T0,
        T0 + timedelta(days=28),
        "api_calls",
        Decimal("10.500000000000"),
        Money(99, "USD"),
        "pro",
        2,
        Fraction(2_419_199_999_999, 2_419_200_000_000),
        False,
    )
    later = replace(row, period_start=T0 + timedelta(days=28), period_end=T0 + timedelta(days=59), share=Fraction(1))
    with ledger.session() as s:
        s.record_billed_usage(later)
        s.record_billed_usage(replace(row, metric_code="storage"))
        s.record_billed_usage(row)
        s.record_billed_usage(replace(row, subscription_id="s2"))
    with ledger.session() as s:
        s.record_billed_usage(replace(row, quantity=Decimal("1E+25"), amount=Money(100, "USD"), allow_overage=True))
    with ledger.session() as s:
        found = s.billed_usage("s1")
    expected = [
        replace(row, quantity=Decimal("1E+25"), amount=Money(100, "USD"), allow_overage=True),
        replace(row, metric_code="storage"),
        later,
    ]
    assert found == expected
    assert [exactly(b) for b in found[1:]] == [exactly(b) for b in expected[1:]]
    assert found[0].period_start.tzinfo is UTC


def test_plan_snapshots_by_version(ledger: Ledger) -> None:
    tiers = (Tier(Decimal(100), Decimal("0.000000000001"), Decimal("1.50")), Tier(None, Decimal("0.5")))
    v1 = Plan(
        "pro",
        "IDR",
        Decimal(350000),
        BillingInterval.YEAR,
        True,
        (
            PlanMeter("calls", PricingModel.TIERED, tier_mode=TierMode.VOLUME, tiers=tiers),
            PlanMeter("seats", PricingModel.PACKAGE, Decimal("9.99"), Decimal("2.5"), Decimal("0.10"), Decimal(5)),
        ),
        "Pro",
        1,
        {"a": "b"},
    )
    v3 = Plan("pro", "IDR", Decimal(400000), version=3)
    with ledger.session() as s:
        s.save_plan("t1", v3)
        s.save_plan("t1", v1)
        s.save_plan("t1", Plan("basic", "IDR", Decimal(1), version=9))
    with ledger.session() as s:
        assert exactly(s.get_plan("t1", "pro")) == exactly(v3)
        assert exactly(s.get_plan("t1", "pro", 1)) == exactly(v1)
        assert s.get_plan("t1", "pro", 2) is None
        assert s.get_plan("t2", "pro") is None
        assert s.get_plan("t1", "enterprise") is None
        s.save_plan("t1", replace(v1, name="Pro (renamed)"))
    with ledger.session() as s:
        found = s.get_plan("t1", "pro", 1)
        assert found is not None and found.name == "Pro (renamed)"


def test_a_kept_plan_never_replaces_the_stored_snapshot_of_its_version(ledger: Ledger) -> None:
    """The invoice worker keeps the plan version it rated when the ledger lacks it; a writer that
    stored that version first keeps its snapshot, and only a stored snapshot is announced."""
    stored, rated = Plan("pro", "USD", Decimal(49), version=2), Plan("pro", "USD", Decimal(99), version=2)
    with ledger.session() as s:
        s.save_plan("t1", stored)
    announced = len(outbox(ledger))
    with ledger.session() as s:
        s.keep_plan("t1", rated)
        s.keep_plan("t1", replace(rated, version=3))
    with ledger.session() as s:
        assert exactly(s.get_plan("t1", "pro", 2)) == exactly(stored)
        assert exactly(s.get_plan("t1", "pro", 3)) == exactly(replace(rated, version=3))
    kept = outbox(ledger)[announced:]
    assert [(m.topic, m.payload["version"], m.payload["base_price"]) for m in kept] == [("catalog.plans", 3, "99")]


def test_discounted_invoices_are_counted(ledger: Ledger) -> None:
    with ledger.session() as s:
        s.add_invoice(invoice())
        s.add_invoice(invoice(start=T0 + timedelta(days=28), sequence=2))
        s.add_invoice(invoice(start=T0 + timedelta(days=56), sequence=3, coupon=False))
        s.add_invoice(invoice(sub="s2", sequence=4))
    with ledger.session() as s:
        assert s.discounted_invoice_count("s1") == 2
        assert s.discounted_invoice_count("s2") == 1
        assert s.discounted_invoice_count("s3") == 0


def test_invoices_are_listed_in_the_order_they_were_added(ledger: Ledger) -> None:
    added = [
        invoice(sub="s2", start=T0 + timedelta(days=28), sequence=1),
        invoice(sub="s1", start=T0 + timedelta(days=28), sequence=2),
        invoice(sub="s2", start=T0, sequence=3),
        invoice(sub="s9", tenant="t2", sequence=1),
    ]
    with ledger.session() as s:
        s.add_invoice(added[0])
        s.add_invoice(added[1])
    with ledger.session() as s:
        s.add_invoice(added[2])
        s.add_invoice(added[3])
        s.add_invoice(invoice(sub="s1", start=T0 + timedelta(days=56), sequence=4))
    with ledger.session() as s:
        assert [i.invoice_number for i in s.list_invoices("t1")] == [f"INV-2026-00000{n}" for n in (1, 2, 3, 4)]
        assert s.list_invoices("t1", "s2") == [added[0], added[2]]
        assert s.list_invoices("t2") == [added[3]]
        assert s.list_invoices("t2", "s1") == [] and s.list_invoices("t3") == []


def terms(tenant: str = "t1", rate: str = "11") -> BillingTerms:
    metrics = {
        "api_calls": Metric("api_calls", MetricType.COUNTER, Aggregation.SUM, "calls"),
        "seats": Metric("seats", MetricType.GAUGE, Aggregation.MAX, "seats", "seats"),
    }
    rules = (TaxRule("ID", "PPN", Decimal(rate), True), TaxRule("US", "Sales", Decimal("0.000000000001"), False, False))
    coupons = {
        "W10": Coupon("W10", percent_off=Decimal("10.50")),
        "OFF5": Coupon("OFF5", amount_off=Decimal("5.00"), duration=CouponDuration.REPEATING, duration_in_periods=3),
    }
    return BillingTerms(tenant, metrics, rules, coupons)


def test_terms_are_announced_when_created_or_changed_and_never_when_saved_again(ledger: Ledger) -> None:
    first, changed = terms(), terms(rate="12")
    with ledger.session() as s:
        assert s.get_terms("t1") is None
        created = s.save_terms(first)
        assert s.save_terms(first) == created  # the same terms again in one transaction: nothing more
        s.save_terms(terms("t2"))
    assert (created.terms, created.revision) == (first, 1)
    with ledger.session() as s:
        assert s.save_terms(replace(first, tax_rules=list(first.tax_rules))) == created  # a list is the same rules
        assert s.get_terms("t1") == created
    with pytest.raises(RuntimeError), ledger.session() as s:  # a rolled-back change: no revision, no message
        s.save_terms(changed)
        raise RuntimeError("crash")
    with ledger.session() as s:
        assert s.save_terms(changed).revision == 2
        assert s.save_terms(first).revision == 3  # back again is a change too
    with ledger.session() as s:
        stored = s.get_terms("t1")
    assert stored is not None and (stored.terms, stored.revision) == (first, 3)
    assert exactly(stored.terms.tax_rules[1]) == exactly(first.tax_rules[1])
    assert [(m.topic, m.key, m.payload["revision"]) for m in outbox(ledger)] == [
        ("catalog.terms", "t1", 1),
        ("catalog.terms", "t2", 1),
        ("catalog.terms", "t1", 2),
        ("catalog.terms", "t1", 3),
    ]
    assert [m.payload for m in outbox(ledger)] == [
        {**terms_to_json(first), "revision": 1},
        {**terms_to_json(terms("t2")), "revision": 1},
        {**terms_to_json(changed), "revision": 2},
        {**terms_to_json(first), "revision": 3},
    ]
    assert terms_record_from_json(outbox(ledger)[3].payload) == TermsRecord(first, 3)


def test_terms_that_would_not_read_back_are_refused_naming_the_field(ledger: Ledger) -> None:
    bad = replace(terms(), coupons={"W10": Coupon("W10", amount_off=Decimal("1E+30"))})
    with pytest.raises(InvalidValue) as error, ledger.session() as s:
        s.save_terms(bad)
    assert error.value.field == "terms.coupons[0].amount_off"
    with ledger.session() as s:
        assert s.get_terms("t1") is None
    assert outbox(ledger) == []


def test_every_subscription_revision_is_kept_with_its_change_and_only_with_it(ledger: Ledger) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with ledger.session() as s:
        s.save_plan("t1", Plan("m", "USD", base_price=Decimal("10")))
        s.save_plan("t1", Plan("w", "USD", base_price=Decimal("3"), billing_interval=BillingInterval.WEEK))
        created = s.save_subscription(Subscription("s1", "t1", "m", start), recorded_at=start)
        assert s.save_subscription(Subscription("s1", "t1", "m", start), recorded_at=T0) == created  # no change
    change_at = datetime(2026, 1, 20, tzinfo=UTC)
    changed = Lifecycle(
        effective_at=change_at, previous_plan_code="m", previous_plan_version=1, plan_changed_at=change_at
    )
    moved = Subscription("s1", "t1", "w", start)
    with ledger.session() as s:
        second = s.save_subscription(moved, lifecycle=changed, recorded_at=datetime(2026, 1, 10, tzinfo=UTC))
    canceled = replace(changed, effective_at=T0, cancel_at=T0, canceled_at=T0)
    with pytest.raises(RuntimeError), ledger.session() as s:  # the cancel fails after it was saved
        s.save_subscription(moved, status=SubscriptionStatus.CANCELED, lifecycle=canceled, recorded_at=T0)
        raise RuntimeError("crash before commit")
    with ledger.session() as s:
        revisions = s.subscription_revisions("s1")
        assert s.get_subscription("s1") == second
        assert s.subscription_revisions("s2") == []
    assert [(r.record, r.recorded_at) for r in revisions] == [
        (created, start),
        (second, datetime(2026, 1, 10, tzinfo=UTC)),
    ]
    assert revisions[1].record.lifecycle == changed and revisions[1].record.billing_interval is BillingInterval.WEEK
