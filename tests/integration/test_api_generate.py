"""GenerateInvoiceForSubscription with dry_run over the wire: the invoice of an ended period from
the usage store, equal to the one finalization then stores, while the dry run stores nothing; a
finalized period answers its stored invoice; errors name the field; another tenant's subscription
is NOT_FOUND. Without dry_run the invoice is finalized through the invoice worker's own step:
stored once, numbered gaplessly, announced on the outbox, the same invoice on every later call."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from billing.usage_reader import StoreUsageReader
from invoicing.engine.subscriptions import close_due, open_cycle
from invoicing.service import InvoiceService
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import NOW, Api, pro_plan, status_of, terms
from tests.integration.test_api_rating import ingest

pytestmark = pytest.mark.integration
JANUARY = ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")


def generate(sub: str = "sub_1", period: tuple[str, str] | None = None, dry_run: bool = True) -> Any:
    request = I.GenerateInvoiceForSubscriptionRequest(subscription_id=sub, dry_run=dry_run)
    if period is not None:
        request.period_start.FromJsonString(period[0])
        request.period_end.FromJsonString(period[1])
    return request


def subscribe(api: Api, tenant: str = "t1", sub: str = "sub_1") -> None:
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth(tenant))
    request = S.CreateSubscriptionRequest(id=sub, plan_code="pro", region_code="ID", coupon_code="WELCOME10")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth(tenant))


def finalize_january(api: Api) -> None:
    """Finalize January as the loop does: rated from the same store, at the same instant."""
    assert api.usage is not None
    with api.ledger.session() as session:
        record = session.get_subscription("sub_1")
        assert record is not None
        plan = session.get_plan("t1", "pro", record.plan_version)
    assert plan is not None
    closed, _ = close_due(open_cycle(record.subscription, plan))
    InvoiceService(api.ledger, StoreUsageReader(api.usage), terms("t1")).close_period(closed, NOW)


def content(invoice: Any) -> tuple[Any, ...]:
    lines = [(x.type, x.description, x.amount, x.quantity, x.unit_price, dict(x.metadata)) for x in invoice.line_items]
    totals = (invoice.subtotal, invoice.discount_total, invoice.tax_total, invoice.total, invoice.amount_due)
    return (lines, totals, invoice.billing_period_start, invoice.billing_period_end, invoice.plan_code)


def test_a_dry_run_is_the_invoice_finalization_stores_and_stores_nothing(api_usage: Api) -> None:
    api = api_usage
    subscribe(api)
    ingest(api, [("sub_1", "api_calls", 3000, "2026-01-15T00:00:00"), ("sub_1", "api_calls", 9, "2026-02-02T00:00:00")])
    dry = api.invoices.GenerateInvoiceForSubscription(generate(period=JANUARY), metadata=api.auth()).invoice
    assert (dry.id, dry.invoice_number, dry.status) == ("", "", I.INVOICE_STATUS_DRAFT)
    # 49.00 + 2000 calls above 1000 included at 0.002 = 53.00; WELCOME10 −5.30; PPN 11% of 47.70 = 5.25
    assert (dry.subtotal.units, dry.discount_total.units, dry.tax_total.units, dry.total.units) == (
        5300,
        530,
        525,
        5295,
    )
    assert api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices == []
    again = api.invoices.GenerateInvoiceForSubscription(generate(period=JANUARY), metadata=api.auth()).invoice
    assert again == dry  # nothing was used up: no coupon, credit or number taken
    finalize_january(api)
    (stored,) = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices
    assert content(stored) == content(dry)
    assert stored.invoice_number and stored.status == I.INVOICE_STATUS_PENDING
    after = api.invoices.GenerateInvoiceForSubscription(generate(period=JANUARY), metadata=api.auth()).invoice
    assert after == stored  # a finalized period answers its invoice
    latest = api.invoices.GenerateInvoiceForSubscription(generate(), metadata=api.auth()).invoice
    assert (latest.billing_period_start.ToJsonString(), latest.billing_period_end.ToJsonString()) == (
        "2026-02-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
    )
    assert (latest.discount_total.units, latest.status) == (0, I.INVOICE_STATUS_DRAFT)  # the coupon was once


def test_dry_run_errors(api_usage: Api) -> None:
    api = api_usage
    subscribe(api)
    subscribe(api, "t2", "sub_2")
    call = api.invoices.GenerateInvoiceForSubscription
    code, details = status_of(call, generate(), metadata=api.auth("t2"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "subscription_id: no subscription 'sub_1'")
    code, details = status_of(call, generate(dry_run=False), metadata=api.auth("t2"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "subscription_id: no subscription 'sub_1'")
    only_start = generate()
    only_start.period_start.FromJsonString(JANUARY[0])
    for request, code, field in (
        (generate(""), grpc.StatusCode.INVALID_ARGUMENT, "subscription_id"),
        (only_start, grpc.StatusCode.INVALID_ARGUMENT, "period_end"),
        (generate(period=(JANUARY[1], JANUARY[0])), grpc.StatusCode.INVALID_ARGUMENT, "period_end"),
        (
            generate(period=("2026-01-01T00:00:00Z", "2026-01-15T00:00:00Z")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "period_start",
        ),
        (
            generate(period=("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "period_start",
        ),
    ):
        got, details = status_of(call, request, metadata=api.auth())
        assert (got, details.split(":")[0]) == (code, field), details
    api.subscriptions.CancelSubscription(S.CancelSubscriptionRequest(id="sub_1"), metadata=api.auth())
    # canceled now: the latest ended period is the one the cancel cut, its base fee prorated
    cut = call(generate(), metadata=api.auth()).invoice
    assert (cut.billing_period_start.ToJsonString(), cut.billing_period_end.ToJsonString()) == (
        "2026-03-01T00:00:00Z",
        "2026-03-10T12:00:00Z",
    )
    recurring = next(x for x in cut.line_items if x.type == I.INVOICE_LINE_ITEM_TYPE_RECURRING)
    assert recurring.amount.units == 1502  # 49.00 × 9.5 / 31 days, half up
    uncut = generate(period=("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    code, details = status_of(call, uncut, metadata=api.auth())
    assert (code, details.split(":")[0]) == (grpc.StatusCode.FAILED_PRECONDITION, "period_start")


def test_a_dry_run_without_the_usage_store_is_unavailable(api: Api) -> None:
    subscribe(api)
    code, details = status_of(api.invoices.GenerateInvoiceForSubscription, generate(), metadata=api.auth())
    assert (code, "CLICKHOUSE_URL" in details) == (grpc.StatusCode.UNAVAILABLE, True)


def outbox_count(api: Api) -> int:
    with api.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM outbox WHERE topic = 'invoice.finalized'")).scalar())


def test_a_stored_generation_finalizes_the_dry_run_once_with_the_next_number(api_usage: Api) -> None:
    api = api_usage
    subscribe(api)
    subscribe(api, sub="sub_3")
    ingest(api, [("sub_1", "api_calls", 3000, "2026-01-15T00:00:00"), ("sub_3", "api_calls", 5, "2026-01-02T00:00:00")])
    call = api.invoices.GenerateInvoiceForSubscription
    dry = call(generate(period=JANUARY), metadata=api.auth()).invoice
    stored = call(generate(period=JANUARY, dry_run=False), metadata=api.auth()).invoice
    assert content(stored) == content(dry)
    assert (stored.status, stored.invoice_number) == (I.INVOICE_STATUS_PENDING, "INV-2026-000001")
    assert stored == api.invoices.GetInvoice(I.GetInvoiceRequest(id=stored.id), metadata=api.auth()).invoice
    assert outbox_count(api) == 1
    # a second call, and the loop finalizing the same period, answer the same invoice and write nothing
    assert call(generate(period=JANUARY, dry_run=False), metadata=api.auth()).invoice == stored
    finalize_january(api)
    assert call(generate(dry_run=False), metadata=api.auth()).invoice.billing_period_start.ToJsonString() == (
        "2026-02-01T00:00:00Z"
    )
    other = call(generate("sub_3", JANUARY, dry_run=False), metadata=api.auth()).invoice
    listed = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices
    assert [i.invoice_number for i in listed] == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    assert other.invoice_number == "INV-2026-000003" and outbox_count(api) == 3
    # the coupon (once) was used by January's stored invoice: February's dry run has no discount
    february = call(generate(period=("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")), metadata=api.auth()).invoice
    assert february.discount_total.units == 0


def test_a_refused_stored_generation_takes_no_number(api_usage: Api) -> None:
    api = api_usage
    subscribe(api)
    call = api.invoices.GenerateInvoiceForSubscription
    future = generate(period=("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"), dry_run=False)
    assert status_of(call, future, metadata=api.auth())[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert call(generate(period=JANUARY, dry_run=False), metadata=api.auth()).invoice.invoice_number == (
        "INV-2026-000001"
    )
    assert outbox_count(api) == 1


def test_racing_stored_generations_store_one_invoice_a_period_numbered_without_gap(api_usage: Api) -> None:
    api = api_usage
    subscribe(api)
    for sub in ("sub_3", "sub_4"):
        subscribe(api, sub=sub)
    ingest(api, [("sub_1", "api_calls", 3000, "2026-01-15T00:00:00")])
    answers: list[Any] = []
    lock = threading.Lock()

    def generate_one(sub: str) -> None:
        request = generate(sub, JANUARY, dry_run=False)
        answer = api.invoices.GenerateInvoiceForSubscription(request, metadata=api.auth()).invoice
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=generate_one, args=(sub,)) for sub in ("sub_1", "sub_3", "sub_4") * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 12
    by_sub = {
        a.subscription_id: {(b.id, b.invoice_number) for b in answers if b.subscription_id == a.subscription_id}
        for a in answers
    }
    assert all(len(found) == 1 for found in by_sub.values())  # every caller of a period got the one invoice
    listed = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices
    assert sorted(i.invoice_number for i in listed) == [f"INV-2026-00000{n}" for n in (1, 2, 3)]
    assert outbox_count(api) == 3
