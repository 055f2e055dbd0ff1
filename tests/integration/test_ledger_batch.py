"""The PostgreSQL ledger under the invoice service: every golden scenario leaves the same invoices
and invoice.finalized events in PostgreSQL as in memory, one transaction per finalization and with
the whole run in one ``PostgresLedger.batch``; and a batch keeps each session's guarantees."""

from __future__ import annotations

import threading
from collections.abc import Collection
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from billing.simulate import Simulation, load_scenario
from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.model import Invoice, InvoiceLineItem, LineType
from invoicing.engine.subscriptions import ClosedPeriod
from invoicing.ledger import tables
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import BilledUsage, OutboxMessage
from invoicing.service import INVOICE_FINALIZED, InvoiceService
from rating.errors import InvalidValue
from rating.money import Money
from rating.periods import Period
from streams.memory import MemoryUsageStore

pytestmark = pytest.mark.integration

CASES = sorted((Path(__file__).parents[1] / "scenarios" / "cases").glob("*.yaml"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def ledger(pg_url: str) -> Any:
    engine = create_engine(pg_url, pool_size=4)
    yield PostgresLedger(engine)
    engine.dispose()


def events(ledger: PostgresLedger) -> list[OutboxMessage]:
    with ledger.engine.connect() as connection:
        rows = connection.execute(select(tables.outbox).order_by(tables.outbox.c.id)).all()
    return [OutboxMessage(r.topic, r.key, r.payload) for r in rows if r.topic == INVOICE_FINALIZED]


def stored(ledger: Any, tenant: str) -> list[Invoice]:
    with ledger.session() as s:
        return list(s.list_invoices(tenant))


class BatchPerInstant:
    """Finalizes the periods closing at one instant in one ledger batch that reads them ahead, as
    bench/billing_run.py does."""

    def __init__(self, service: InvoiceService, ledger: PostgresLedger) -> None:
        self.service, self.ledger = service, ledger
        self.batch = ExitStack()
        self.left = 0

    def prefetch(self, closing: Collection[ClosedPeriod]) -> None:
        self.service.prefetch(closing)
        self.left = len(closing)
        self.batch.enter_context(self.ledger.batch([(c.subscription.id, c.period.start) for c in closing]))

    def close_period(self, closed: ClosedPeriod, finalized_at: datetime, late: Collection[datetime] = ()) -> Invoice:
        try:
            return self.service.close_period(closed, finalized_at, late)
        finally:
            self.left -= 1
            if self.left == 0:
                self.batch.close()

    def close_late_usage(
        self, closed: ClosedPeriod, finalized_at: datetime, late: Collection[datetime]
    ) -> Invoice | None:
        return self.service.close_late_usage(closed, finalized_at, late)  # not read ahead: no usage of its own


@pytest.mark.parametrize("mode", ["per-invoice", "one-batch", "batch-per-instant"])
@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden_scenarios_leave_the_same_invoices_in_postgresql(case: Path, mode: str, ledger: PostgresLedger) -> None:
    scenario = load_scenario(case)
    memory = MemoryLedger()
    expected = Simulation(scenario, MemoryUsageStore(), memory).run().invoices
    simulation = Simulation(scenario, MemoryUsageStore(), ledger)
    if mode == "one-batch":
        with ledger.batch():
            got = simulation.run().invoices
    else:
        if mode == "batch-per-instant":
            simulation.finalizer = BatchPerInstant(simulation.service, ledger)
        got = simulation.run().invoices
    assert got == expected
    assert stored(ledger, scenario.tenant_id) == stored(memory, scenario.tenant_id)
    assert events(ledger) == [m for m in memory.state.outbox if m.topic == INVOICE_FINALIZED]


def day_draft(subscription: str, start: datetime) -> Invoice:
    """Tenant t1's draft of plan ``pro`` for the day from ``start``: 1.00 USD, no coupon, tax or credit."""
    return compose_invoice(
        tenant_id="t1",
        subscription_id=subscription,
        plan_code="pro",
        period=Period(start, start + timedelta(days=1)),
        currency="USD",
        charges=[InvoiceLineItem(LineType.RECURRING, "Pro", Money(100, "USD"))],
        coupon=None,
        tax_rules=[],
        tax_inclusive=False,
        credit_available=Money(0, "USD"),
    )


def invoice(subscription: str, day: int, number: int) -> Invoice:
    start = T0 + timedelta(days=day)
    return finalize(day_draft(subscription, start), number, start)


def finalize_in(session: Any, subscription: str, day: int) -> Invoice:
    """What the service does for one period: find, number, add, bill, announce."""
    assert session.find_invoice(subscription, T0 + timedelta(days=day)) is None
    done = invoice(subscription, day, session.next_invoice_sequence("t1"))
    session.add_invoice(done)
    start = done.period.start
    usage = BilledUsage(subscription, start, done.period.end, "calls", Decimal(day), Money(day, "USD"), "pro", 1,
                        Fraction(1), True)  # fmt: skip
    session.record_billed_usage(usage)
    session.add_outbox(OutboxMessage(INVOICE_FINALIZED, subscription, {"n": done.invoice_number}))
    return done


def numbers(ledger: PostgresLedger) -> list[str | None]:
    return [i.invoice_number for i in stored(ledger, "t1")]


def test_a_failed_session_in_a_batch_gives_back_its_number_and_rows_and_the_others_commit(
    ledger: PostgresLedger,
) -> None:
    with ledger.batch():
        with ledger.session() as s:
            finalize_in(s, "s1", 0)
        with pytest.raises(RuntimeError), ledger.session() as s:
            finalize_in(s, "s2", 0)
            s.add_credit_note(
                "t1", CreditNote("s2", CreditType.BALANCE, Money(5, "USD"), T0)
            )  # written, in a savepoint
            raise RuntimeError("crash in the middle of a finalization")
        with ledger.session() as s:
            finalize_in(s, "s3", 0)
            assert s.credit_balance("s2", "USD") == Money(0, "USD")
    assert numbers(ledger) == ["INV-2026-000001", "INV-2026-000002"]
    assert [m.key for m in events(ledger)] == ["s1", "s3"]
    with ledger.session() as s:
        assert s.billed_usage("s2") == [] and len(s.billed_usage("s3")) == 1
        assert s.credit_balance("s2", "USD") == Money(0, "USD")
        assert s.next_invoice_sequence("t1") == 3


def test_a_batch_that_raises_commits_nothing_and_its_numbers_come_back(ledger: PostgresLedger) -> None:
    with pytest.raises(RuntimeError), ledger.batch():
        for n in range(5):
            with ledger.session() as s:
                finalize_in(s, f"s{n}", 0)
        raise RuntimeError("crash before the batch commits")
    assert numbers(ledger) == [] and events(ledger) == []
    with ledger.session() as s:
        assert s.next_invoice_sequence("t1") == 1


def test_a_batch_numbers_without_gaps_beside_concurrent_sessions(ledger: PostgresLedger) -> None:
    errors: list[BaseException] = []

    def plain_sessions() -> None:
        try:
            for day in range(10):
                with ledger.session() as s:
                    finalize_in(s, "plain", day)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=plain_sessions)
    with ledger.batch():
        for day in range(10):
            with ledger.session() as s:
                finalize_in(s, "batched", day)
        thread.start()  # its sessions wait for the counter row until the batch commits
    thread.join()
    assert errors == []
    assert sorted(n or "" for n in numbers(ledger)) == [f"INV-2026-{n:06d}" for n in range(1, 21)]
    assert len(events(ledger)) == 20


def test_a_period_invoiced_twice_in_one_batch_is_refused_like_in_a_session(ledger: PostgresLedger) -> None:
    with ledger.batch():
        with ledger.session() as s:
            first = finalize_in(s, "s1", 0)
        with ledger.session() as s:
            assert s.find_invoice("s1", T0) == first  # the batch's own, not yet written
            with pytest.raises(InvalidValue) as error:
                s.add_invoice(invoice("s1", 0, 99))
            assert error.value.field == "billing_period_start"
    assert numbers(ledger) == ["INV-2026-000001"]


def test_a_period_invoiced_by_another_transaction_during_a_batch_rolls_the_batch_back(
    ledger: PostgresLedger,
) -> None:
    with pytest.raises(InvalidValue), ledger.batch():
        with ledger.session() as s:
            finalize_in(s, "s0", 0)
        with ledger.session() as s:
            assert s.find_invoice("s1", T0) is None
            number = s.next_invoice_sequence("t1")
            # meanwhile another worker invoices the same period (adding an invoice takes no counter lock)
            other = PostgresLedger(ledger.engine)
            with other.session() as o:
                o.add_invoice(invoice("s1", 0, 7))
            s.add_invoice(invoice("s1", 0, number))  # known absent: deferred, refused when written
    assert [i.subscription_id for i in stored(ledger, "t1")] == ["s1"]  # only the other worker's
    assert events(ledger) == []


def test_reads_in_a_batch_see_the_batch_s_own_rows(ledger: PostgresLedger) -> None:
    with ledger.batch():
        with ledger.session() as s:
            finalize_in(s, "s1", 0)
        with ledger.session() as s:
            assert [b.quantity for b in s.billed_usage("s1")] == [Decimal(0)]
            assert [i.subscription_id for i in s.list_invoices("t1")] == ["s1"]
            finalize_in(s, "s1", 1)
            assert [b.quantity for b in s.billed_usage("s1")] == [Decimal(0), Decimal(1)]
    assert numbers(ledger) == ["INV-2026-000001", "INV-2026-000002"]


def test_a_batch_reads_its_periods_ahead_and_still_catches_a_period_invoiced_meanwhile(
    ledger: PostgresLedger,
) -> None:
    with ledger.session() as s:
        s.add_invoice(invoice("s1", 0, s.next_invoice_sequence("t1")))
        s.add_credit_note("t1", CreditNote("s2", CreditType.BALANCE, Money(70, "USD"), T0))
    periods = [(f"s{n}", T0) for n in (1, 2, 3)]
    with ledger.batch(periods), ledger.session() as s:
        found = s.find_invoice("s1", T0)
        assert found is not None and found.invoice_number == "INV-2026-000001"
        assert s.find_invoice("s2", T0) is None and s.find_invoice("s3", T0) is None
        assert s.credit_balance("s2", "USD") == Money(70, "USD")  # positive: read again under the lock
        assert s.credit_balance("s3", "USD") == Money(0, "USD")
        s.use_credit("s2", Money(30, "USD"), "INV-2026-000002")
        assert s.credit_balance("s2", "USD") == Money(40, "USD")
    with pytest.raises(InvalidValue), ledger.batch(periods), ledger.session() as s:
        assert s.find_invoice("s3", T0) is None
        with PostgresLedger(ledger.engine).session() as other:
            other.add_invoice(invoice("s3", 0, 9))
        s.add_invoice(invoice("s3", 0, s.next_invoice_sequence("t1")))
    assert [i.subscription_id for i in stored(ledger, "t1")] == ["s1", "s3"]
    with ledger.session() as s:
        assert s.credit_balance("s2", "USD") == Money(40, "USD")
