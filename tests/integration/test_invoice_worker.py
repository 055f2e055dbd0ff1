"""The invoice worker on the real broker and PostgreSQL: final RatingResults become the invoices
InvoiceService computes directly from the same inputs, field for field; a redelivered message
changes nothing (one invoice, one outbox row); a bad message is dead-lettered with its reason."""

from __future__ import annotations

import contextlib
import random
import socket
import string
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from sqlalchemy import create_engine, select

from billing.clock import wall_ms
from billing.invoice.worker import InvoiceWorker, InvoiceWorkerSettings
from billing.rate.messages import RATING_RESULT, FinalRating, write_rating_result
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.model import Invoice
from invoicing.engine.render import invoice_to_dict
from invoicing.engine.subscriptions import ClosedPeriod, Subscription
from invoicing.engine.tax import TaxRule
from invoicing.engine.terms import BillingTerms
from invoicing.ledger import tables as t
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import Ledger, UsageRequest
from invoicing.service import INVOICE_FINALIZED, InvoiceService
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier
from rating.late import LateUsage
from rating.money import currency_exponent
from rating.periods import Period
from schemas import avro_codec
from streams.kafka import messages
from streams.metrics import serve
from tests.ratings import final_rating_of_usage
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
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
METRICS = {
    "api_calls": Metric("api_calls"),
    "storage_gb": Metric("storage_gb", MetricType.GAUGE, Aggregation.MAX, "GB"),
}
COUPONS = {"HALF": Coupon("HALF", percent_off=Decimal("50"), duration=CouponDuration.REPEATING, duration_in_periods=2)}
TAX = (TaxRule("ID", "PPN", Decimal("11")), TaxRule("XX", "VAT", Decimal("20"), is_default=True))


def terms(tenant: str) -> BillingTerms:
    return BillingTerms(tenant, METRICS, TAX, COUPONS)


def month(n: int) -> Period:
    start = datetime(2026 + n // 12, n % 12 + 1, 1, tzinfo=UTC)
    end = datetime(2026 + (n + 1) // 12, (n + 1) % 12 + 1, 1, tzinfo=UTC)
    return Period(start, end)


@dataclass(frozen=True)
class Case:
    """One message's inputs, kept apart from the message so the reference never reads it."""

    closed: ClosedPeriod
    terms: BillingTerms
    usage: dict[str, Decimal]
    finalized_at: datetime
    late: tuple[LateUsage, ...]

    def rating(self) -> FinalRating:
        return final_rating_of_usage(self.closed, self.terms, self.usage, self.finalized_at, self.late)


def usage_of(sub: int, period: int) -> dict[str, Decimal]:
    return {
        "api_calls": Decimal(900 + 37 * sub + 211 * period) + Decimal("0.5") * (sub % 3),
        "storage_gb": Decimal(sub % 25) + Decimal("0.125") * period,
    }


def cases(tenants: int, subscriptions: int, periods: int, late_every: int = 3, prefix: str = "") -> list[Case]:
    """``subscriptions`` per tenant, ``periods`` monthly periods each (the first prorated, some with a
    coupon, some regions with their own tax, some overage not allowed), in closing order; every
    ``late_every``-th subscription's later periods carry late usage of the previous period."""
    out = []
    for n in range(periods):
        for tenant in range(tenants):
            for s in range(subscriptions):
                sub_id = f"{prefix}t{tenant}-sub{s:05d}"
                sub = Subscription(
                    sub_id,
                    f"{prefix}t{tenant}",
                    "pro",
                    T0 + timedelta(days=s % 7),
                    region_code=("ID", "XX", None)[s % 3],
                    allow_overage_billing=s % 5 != 4,
                    coupon_code="HALF" if s % 4 == 1 else None,
                )
                period = month(n)
                share = Fraction(1)
                if n == 0:
                    period = Period(sub.start_at, month(0).end)
                    share = Fraction(int((period.end - period.start).total_seconds()), 31 * 86400)
                closed = ClosedPeriod(sub, PLAN, period, share, False, "period_end")
                late: tuple[LateUsage, ...] = ()
                if n and s % late_every == 0:
                    before = usage_of(s, n - 1)
                    previous = Period(sub.start_at, month(0).end) if n == 1 else month(n - 1)
                    late = (
                        LateUsage(previous, "api_calls", before["api_calls"] + 500 + s),
                        LateUsage(previous, "storage_gb", before["storage_gb"]),
                    )
                finalized_at = period.end + timedelta(hours=1)
                out.append(Case(closed, terms(f"{prefix}t{tenant}"), usage_of(s, n), finalized_at, late))
    return out


class Reader:
    def __init__(self, case: Case) -> None:
        p = case.closed.period
        sub = case.closed.subscription.id
        self.known = {(sub, m, p.start, p.end): q for m, q in case.usage.items()}
        self.known |= {(sub, u.metric_code, u.period.start, u.period.end): u.quantity for u in case.late}

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        return [self.known[(r.subscription_id, r.metric_code, r.start, r.end)] for r in requests]


def reference(all_cases: Sequence[Case], ledger: Ledger | None = None) -> list[Invoice]:
    """InvoiceService called directly, in message order, on the memory ledger."""
    ledger = ledger or MemoryLedger()
    invoices = []
    for case in all_cases:
        service = InvoiceService(ledger, Reader(case), case.terms)
        late = {u.period.start for u in case.late}
        invoices.append(service.close_period(case.closed, case.finalized_at, late))
    return invoices


def produce(bootstrap: str, topic: str, values: Sequence[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for key, value in values:
        producer.produce(topic, value, key=key)
        producer.poll(0)
    assert producer.flush(30) == 0


def dead_letters(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The first ``expected`` dead letters of ``topic`` (and any that came with them)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    letters: list[dict[str, Any]] = []

    def read_one() -> None:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None and message.value() is not None:
            letters.append(messages.read_dead_letter(message.value()))  # type: ignore[arg-type]

    try:
        wait_until(
            lambda: len(letters) >= expected,
            timeout,
            f"{expected} dead letters on {topic}",
            interval=0,
            step=read_one,
            diagnose=lambda: f"{len(letters)} read",
        )
    finally:
        consumer.close()
    return letters


def invoices_in(url: str) -> list[Invoice]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tenants = sorted(row[0] for row in connection.execute(select(t.invoices.c.tenant_id).distinct()))
        with PostgresLedger(engine).session() as session:
            return [i for tenant in tenants for i in session.list_invoices(tenant)]
    finally:
        engine.dispose()


def outbox_rows(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(t.outbox.c.key, t.outbox.c.payload["invoice_number"].astext).where(
                    t.outbox.c.topic == INVOICE_FINALIZED
                )
            ).all()
        return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


@pytest.fixture
def worker_for(kafka_broker: Any, pg_url: str) -> Iterator[Any]:
    made: list[InvoiceWorker] = []
    engine = create_engine(pg_url)

    def make(
        topic: str, dlq: str, group: str = "billing-invoicer", sleep: Callable[[float], None] = time.sleep
    ) -> InvoiceWorker:
        settings = InvoiceWorkerSettings(
            kafka_broker.bootstrap, group_id=f"{group}-{topic}", topic=topic, dead_letter_topic=dlq, batch_wait_s=0.2
        )
        worker = InvoiceWorker(settings, PostgresLedger(engine), now_ms=wall_ms, sleep=sleep)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        with contextlib.suppress(RuntimeError):  # closed already
            worker.close()
    engine.dispose()


def drain(worker: InvoiceWorker, until: Any, timeout: float = 60) -> None:
    """Runs the worker until ``until()``, then a few batches more."""
    wait_until(until, timeout, "the worker to finish", interval=0, step=worker.run_once)
    for _ in range(3):  # anything left would show up now
        worker.run_once()


def test_messages_become_the_invoices_of_a_direct_call_and_redelivery_changes_nothing(
    kafka_broker: Any, pg_url: str, worker_for: Any
) -> None:
    all_cases = cases(tenants=2, subscriptions=6, periods=3)
    expected = [invoice_to_dict(i) for i in reference(all_cases)]
    assert any(line["type"] == "ADJUSTMENT" for e in expected for line in e["line_items"])
    assert any(line["type"] == "DISCOUNT" for e in expected for line in e["line_items"])
    topic, dlq = kafka_broker.new_topic("rating.results"), kafka_broker.new_topic("rating.dlq")
    values = [(c.closed.subscription.id, write_rating_result(c.rating())) for c in all_cases]
    produce(kafka_broker.bootstrap, topic, values + values[:5])  # the first five delivered twice
    worker = worker_for(topic, dlq)
    drain(worker, lambda: len(invoices_in(pg_url)) >= len(expected))

    found = sorted((invoice_to_dict(i) for i in invoices_in(pg_url)), key=lambda d: d["invoice_number"])
    assert found == sorted(expected, key=lambda d: d["invoice_number"])
    assert sorted(outbox_rows(pg_url)) == sorted((e["subscription_id"], e["invoice_number"]) for e in expected)
    assert worker.metrics.messages.labels(outcome="finalized")._value.get() == len(expected)
    assert worker.metrics.messages.labels(outcome="redelivered")._value.get() == 5
    by_currency: dict[str, list[int]] = {}
    for e in expected:
        by_currency.setdefault(e["currency_code"], []).append(e["total"])
    for currency, totals in by_currency.items():
        exponent = currency_exponent(currency)
        assert worker.metrics.invoices.labels(currency=currency)._value.get() == len(totals)
        assert worker.metrics.invoiced.labels(currency=currency)._value.get() == pytest.approx(
            sum(totals) / 10**exponent
        )

    # every message again, to a worker of a new group: nothing changes
    again = worker_for(topic, dlq, group="replay")
    drain(again, lambda: again.metrics.messages.labels(outcome="redelivered")._value.get() >= len(values) + 5)
    assert sorted((invoice_to_dict(i) for i in invoices_in(pg_url)), key=lambda d: d["invoice_number"]) == found
    assert len(outbox_rows(pg_url)) == len(expected)
    assert again.metrics.messages.labels(outcome="finalized")._value.get() == 0


def test_bad_messages_are_dead_lettered_with_their_reason_and_the_rest_invoiced(
    kafka_broker: Any, pg_url: str, worker_for: Any
) -> None:
    good = cases(tenants=1, subscriptions=3, periods=1)
    lying = avro_codec.decode(RATING_RESULT, write_rating_result(good[0].rating()))
    lying["items"][0]["amount"]["amount_minor"] += 1
    unknown = Case(
        good[1].closed,
        good[1].terms,
        good[1].usage,
        good[1].finalized_at,
        (LateUsage(month(5), "api_calls", Decimal(1)),),
    )
    topic, dlq = kafka_broker.new_topic("rating.results"), kafka_broker.new_topic("rating.dlq")
    produce(
        kafka_broker.bootstrap,
        topic,
        [
            ("x", b"\x00\x00\x00\x00\x01garbage"),
            ("sub", avro_codec.encode(RATING_RESULT, lying)),
            *[(c.closed.subscription.id, write_rating_result(c.rating())) for c in good],
            (unknown.closed.subscription.id, write_rating_result(unknown.rating())),
        ],
    )
    worker = worker_for(topic, dlq)
    drain(worker, lambda: worker.metrics.messages.labels(outcome="dead_lettered")._value.get() >= 2)
    letters = dead_letters(kafka_broker.bootstrap, dlq, 2)
    assert worker.metrics.dead_letters.labels(reason="undecodable")._value.get() == 1
    assert worker.metrics.dead_letters.labels(reason="invalid_rating_result")._value.get() == 1
    assert [(d["reason"], d["field"]) for d in letters] == [
        ("undecodable", None),
        ("invalid_rating_result", "items[0].amount"),
    ]
    assert letters[0]["original"] == b"\x00\x00\x00\x00\x01garbage" and letters[0]["source_topic"] == topic
    assert letters[1]["original_key"] == b"sub" and letters[1]["source_offset"] == 1
    # a late period the ledger never billed has no billed rows: no adjustment, no error
    found = {i.subscription_id: invoice_to_dict(i) for i in invoices_in(pg_url)}
    assert found == {i.subscription_id: invoice_to_dict(i) for i in reference(good)}


def test_a_message_near_the_size_limit_becomes_a_bounded_letter_and_the_worker_goes_on(
    kafka_broker: Any, pg_url: str, worker_for: Any
) -> None:
    """A 999,900-byte undecodable message made a 1,000,059-byte letter, over the producer's limit:
    produce() raised inside the worker, a restart loop (issue 10, point 4)."""
    (good,) = cases(tenants=1, subscriptions=1, periods=1)
    topic, dlq = kafka_broker.new_topic("rating.results"), kafka_broker.new_topic("rating.dlq")
    junk = b"\x00\x00\x00\x00\x01" + bytes(999_895)
    produce(
        kafka_broker.bootstrap, topic, [("x", junk), (good.closed.subscription.id, write_rating_result(good.rating()))]
    )
    worker = worker_for(topic, dlq)
    drain(worker, lambda: len(invoices_in(pg_url)) >= 1)
    (letter,) = dead_letters(kafka_broker.bootstrap, dlq, 1)
    assert letter["reason"] == "undecodable" and letter["original_truncated"]
    assert letter["original_size"] == len(junk) and letter["original"] == junk[: len(letter["original"])]
    assert len(letter["original"]) <= messages.MAX_LETTER_ORIGINAL
    assert [invoice_to_dict(i) for i in invoices_in(pg_url)] == [invoice_to_dict(i) for i in reference([good])]


def test_usage_the_ledger_asks_for_and_the_message_lacks_is_named_in_a_dead_letter(
    kafka_broker: Any, pg_url: str, worker_for: Any
) -> None:
    first, second = cases(tenants=1, subscriptions=1, periods=2)
    assert second.late
    missing = Case(second.closed, second.terms, second.usage, second.finalized_at, second.late[:1])
    topic, dlq = kafka_broker.new_topic("rating.results"), kafka_broker.new_topic("rating.dlq")
    key = first.closed.subscription.id
    produce(kafka_broker.bootstrap, topic, [(key, write_rating_result(c.rating())) for c in (first, missing)])
    worker = worker_for(topic, dlq)
    drain(worker, lambda: worker.metrics.messages.labels(outcome="dead_lettered")._value.get() >= 1)
    [letter] = dead_letters(kafka_broker.bootstrap, dlq, 1)
    assert letter["reason"] == "not_invoiceable" and letter["field"] == "late_usage"
    assert "storage_gb of t0-sub00000" in letter["detail"]
    assert [i.period.start for i in invoices_in(pg_url)] == [first.closed.period.start]
    assert len(outbox_rows(pg_url)) == 1


def no_outage(seconds: float) -> None:
    """The worker's pause before retrying a batch: a test without an outage has none to retry."""
    raise AssertionError("the worker retried a batch as if PostgreSQL were unreachable")


def test_a_rating_postgresql_refuses_is_dead_lettered_and_the_next_one_invoiced(
    kafka_broker: Any, pg_url: str, worker_for: Any
) -> None:
    """PostgreSQL refusing a message's rows (ProgramLimitExceeded, SQLSTATE 54000: a 3,000-character
    metric code is too long for billed_usage's key) is the message's fault, not an outage: it is
    dead-lettered with the reason, never retried, and the next rating is invoiced."""
    [good] = cases(tenants=1, subscriptions=1, periods=1)
    # random letters: an index entry is compressed first, and a repeated letter would fit
    code = "".join(random.Random(3000).choices(string.ascii_letters + string.digits, k=3000))
    plan = Plan("long", "USD", Decimal("10.00"), meters=(PlanMeter(code, PricingModel.PER_UNIT, Decimal("0.01")),))
    long = Case(
        ClosedPeriod(Subscription("t0-long", "t0", "long", T0), plan, month(0), Fraction(1), False, "period_end"),
        BillingTerms("t0", {**METRICS, code: Metric(code)}, TAX, COUPONS),
        {code: Decimal(7)},
        month(0).end + timedelta(hours=1),
        (),
    )
    topic, dlq = kafka_broker.new_topic("rating.results"), kafka_broker.new_topic("rating.dlq")
    refused = write_rating_result(long.rating())
    produce(
        kafka_broker.bootstrap,
        topic,
        [("t0-long", refused), (good.closed.subscription.id, write_rating_result(good.rating()))],
    )
    worker = worker_for(topic, dlq, sleep=no_outage)
    drain(
        worker,
        lambda: (
            worker.metrics.messages.labels(outcome="dead_lettered")._value.get() >= 1 and len(invoices_in(pg_url)) >= 1
        ),
        timeout=30,
    )
    [letter] = dead_letters(kafka_broker.bootstrap, dlq, 1)
    assert letter["reason"] == "ledger_rejected" and letter["original"] == refused
    assert "54000" in letter["detail"] and "index row size" in letter["detail"], letter["detail"]
    assert worker.metrics.retries._value.get() == 0
    [expected] = reference([good])
    assert [invoice_to_dict(i) for i in invoices_in(pg_url)] == [invoice_to_dict(expected)]
    assert outbox_rows(pg_url) == [(good.closed.subscription.id, expected.invoice_number)]


def test_a_different_final_rating_of_an_invoiced_period_is_dead_lettered_never_taken_as_a_redelivery(
    kafka_broker: Any, pg_url: str, worker_for: Any
) -> None:
    """The same final rating twice is a redelivery: one invoice, no dead letter. Another final rating
    of the invoiced (subscription, period) leaves the invoice as it is and is dead-lettered as
    conflicting_final_rating, counted; in the batch that invoices the period, and after it."""
    first, other = cases(tenants=1, subscriptions=2, periods=1)
    changed = Case(
        first.closed, first.terms, {**first.usage, "api_calls": first.usage["api_calls"] + 1}, first.finalized_at, ()
    )
    key = first.closed.subscription.id
    same, different = write_rating_result(first.rating()), write_rating_result(changed.rating())
    topic, dlq = kafka_broker.new_topic("rating.results"), kafka_broker.new_topic("rating.dlq")
    produce(
        kafka_broker.bootstrap,
        topic,
        [
            (key, same),
            (key, same),
            (key, different),
            (other.closed.subscription.id, write_rating_result(other.rating())),
        ],
    )
    worker = worker_for(topic, dlq)
    outcome = worker.metrics.messages.labels
    drain(worker, lambda: outcome(outcome="dead_lettered")._value.get() >= 1 and len(invoices_in(pg_url)) >= 2, 30)
    expected = sorted((invoice_to_dict(i) for i in reference([first, other])), key=lambda d: d["invoice_number"])
    assert sorted((invoice_to_dict(i) for i in invoices_in(pg_url)), key=lambda d: d["invoice_number"]) == expected

    # once the invoice is committed: the same again is acknowledged, a different one is not
    produce(kafka_broker.bootstrap, topic, [(key, different), (key, same)])
    drain(worker, lambda: outcome(outcome="redelivered")._value.get() >= 2, 30)
    letters = dead_letters(kafka_broker.bootstrap, dlq, 2)
    assert [(d["reason"], d["original"], d["source_offset"], d["field"]) for d in letters] == [
        ("conflicting_final_rating", different, 2, "items[0]"),
        ("conflicting_final_rating", different, 4, "items[0]"),
    ]
    assert "api_calls" in letters[0]["detail"] and expected[0]["invoice_number"] in letters[0]["detail"]
    assert sorted((invoice_to_dict(i) for i in invoices_in(pg_url)), key=lambda d: d["invoice_number"]) == expected
    assert sorted(outbox_rows(pg_url)) == sorted((e["subscription_id"], e["invoice_number"]) for e in expected)
    assert {name: outcome(outcome=name)._value.get() for name in ("finalized", "redelivered", "dead_lettered")} == {
        "finalized": 2,
        "redelivered": 2,
        "dead_lettered": 2,
    }
    assert worker.metrics.conflicts._value.get() == 2


def _scraped_ledger_up(registry: Any) -> float:
    """``billing_invoicer_ledger_up`` read from the worker's metrics endpoint, as Prometheus would."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve(registry, port)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith("billing_invoicer_ledger_up ")]
    assert len(values) == 1, text
    return values[0]


def test_ledger_up_says_from_startup_whether_the_ledger_answers(kafka_broker: Any, pg_url: str) -> None:
    """Before any batch, an invoice worker on a running PostgreSQL reports its ledger up and one on
    a closed port down; while idle it measures again (without counting a retry: nothing waits)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    topic, dlq = kafka_broker.new_topic("rating.results"), kafka_broker.new_topic("rating.dlq")
    reachable = create_engine(pg_url)
    unreachable = create_engine(f"postgresql+psycopg://billing@127.0.0.1:{nobody}/billing?connect_timeout=5")
    workers = []
    try:
        for name, engine in (("up", reachable), ("down", unreachable)):
            settings = InvoiceWorkerSettings(
                kafka_broker.bootstrap, f"probe-{name}-{topic}", topic, dlq, batch_wait_s=0.1, ledger_probe_s=0
            )
            workers.append(InvoiceWorker(settings, PostgresLedger(engine), now_ms=wall_ms))
        up, down = workers
        assert (_scraped_ledger_up(up.metrics.registry), _scraped_ledger_up(down.metrics.registry)) == (1, 0)
        up.ledger = PostgresLedger(unreachable)  # the ledger lost while the worker is idle
        down.ledger = PostgresLedger(reachable)  # and one back
        assert (up.run_once(), down.run_once()) == (0, 0)
        assert (up.metrics.ledger_up._value.get(), down.metrics.ledger_up._value.get()) == (0, 1)
        assert (up.metrics.retries._value.get(), down.metrics.retries._value.get()) == (0, 0)
    finally:
        for worker in workers:
            worker.close()
        reachable.dispose()
        unreachable.dispose()
