"""InvoiceEngineService over the wire: each step answers what the real invoice carries (the steps
chained on a finalized invoice's subtotal give its lines and totals), errors name the field,
another tenant's subscription is NOT_FOUND. The ledger's steps: BuildInvoice composes a period's
invoice, FinalizeInvoice stores the chained steps' components only when they are the ledger's own
(else nothing, and no number), GenerateInvoiceNumber previews the next number, Open/CloseBillingPeriod
follow the calendar and close a period into its invoice."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from schemas.generated.smallbiznis.billing.v1 import billing_pb2 as B
from schemas.generated.smallbiznis.billing.v1 import billing_pb2_grpc
from schemas.generated.smallbiznis.common.v1.money_pb2 import Money
from schemas.generated.smallbiznis.credit.v1 import credit_pb2 as C
from schemas.generated.smallbiznis.credit.v1 import credit_pb2_grpc
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2 as E
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2_grpc
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.rating.v1 import rating_pb2 as R
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import Api, pro_plan, status_of
from tests.integration.test_api_generate import JANUARY, generate
from tests.integration.test_api_invoices import invoice_periods
from tests.integration.test_api_rating import ingest, rate

pytestmark = pytest.mark.integration
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


def engine(api: Api) -> Any:
    return invoice_engine_pb2_grpc.InvoiceEngineServiceStub(api.channel)  # type: ignore[no-untyped-call]


def billing(api: Api) -> Any:
    return billing_pb2_grpc.BillingServiceStub(api.channel)  # type: ignore[no-untyped-call]


def usd(units: int) -> Money:
    return Money(units=units, currency_code="USD")


def pro_snapshot() -> E.PlanSnapshot:
    """``pro_plan()`` as the snapshot an invoice would freeze."""
    plan = pro_plan()
    return E.PlanSnapshot(
        plan_code=plan.code,
        plan_name=plan.name,
        plan_version=1,
        currency_code=plan.currency_code,
        base_price=plan.base_price,
        billing_interval=plan.billing_interval,
        meters=[E.MeterPriceSnapshot.FromString(m.SerializeToString()) for m in plan.meters],
    )


def proration(sub: str = "sub_1", cut: str = "2026-03-10T00:00:00Z", **fields: Any) -> E.RunProrationRequest:
    request = E.RunProrationRequest(subscription_id=sub, **{"plan_snapshot": pro_snapshot(), **fields})
    request.period_start.FromJsonString("2026-03-01T00:00:00Z")
    request.period_end.FromJsonString("2026-04-01T00:00:00Z")
    request.cut_at.FromJsonString(cut)
    return request


@pytest.fixture
def subscribed(api: Api) -> None:
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    request = S.CreateSubscriptionRequest(id="sub_1", plan_code="pro", region_code="ID", coupon_code="WELCOME10")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth())


@pytest.mark.usefixtures("subscribed")
def test_the_steps_chained_give_the_finalized_invoice(api: Api) -> None:
    invoice_periods(api, "sub_1", 1)
    invoice = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices[0]
    charges = [line for line in invoice.line_items if line.type in (I.INVOICE_LINE_ITEM_TYPE_RECURRING,)]
    full = proration(cut="2026-04-01T00:00:00Z")
    full.period_start.FromJsonString("2026-01-01T00:00:00Z")
    full.period_end.FromJsonString("2026-02-01T00:00:00Z")
    full.cut_at.FromJsonString("2026-02-01T00:00:00Z")
    fee = engine(api).RunProration(full, metadata=api.auth()).line_items[0]
    assert (fee.amount, fee.description, fee.metadata) == (
        charges[0].amount,
        charges[0].description,
        charges[0].metadata,
    )
    subtotal = invoice.subtotal
    discount = (
        engine(api)
        .ApplyDiscount(
            E.ApplyDiscountRequest(subscription_id="sub_1", subtotal=subtotal, coupon_code="WELCOME10"),
            metadata=api.auth(),
        )
        .result
    )
    assert discount.discount_total == invoice.discount_total
    taxed = (
        engine(api)
        .ApplyTax(
            E.ApplyTaxRequest(
                subscription_id="sub_1", subtotal=subtotal, discount_total=discount.discount_total, region_code="ID"
            ),
            metadata=api.auth(),
        )
        .result
    )
    assert taxed.tax_total == invoice.tax_total
    billed_tax = [line for line in invoice.line_items if line.type == I.INVOICE_LINE_ITEM_TYPE_TAX]
    assert [(t.description, t.amount) for t in taxed.tax_lines] == [(t.description, t.amount) for t in billed_tax]
    assert [(t.name, t.rate_percent, t.region_code) for t in taxed.taxes] == [("PPN", "11", "ID")]
    credit = engine(api).ApplyCredit(
        E.ApplyCreditRequest(subscription_id="sub_1", total=invoice.total), metadata=api.auth()
    )
    assert (credit.result.credits_applied.units, credit.result.amount_due) == (0, invoice.amount_due)


@pytest.mark.usefixtures("subscribed")
def test_run_proration_is_the_exact_share_of_seconds(api: Api) -> None:
    answer = engine(api).RunProration(proration(), metadata=api.auth())
    assert (answer.used_seconds, answer.period_seconds) == (9 * 86_400, 31 * 86_400)
    (line,) = answer.line_items
    # 49.00 × 9/31 = 14.2258… → 14.23, rounded once
    assert (line.type, line.amount, line.metadata["proration"]) == (
        I.INVOICE_LINE_ITEM_TYPE_RECURRING,
        usd(1423),
        "9/31",
    )
    assert dict(answer.prorated_included_units) == {"api_calls": "290.322580645161", "storage_gb": "0"}
    for request, field in (
        (proration(cut="2026-04-02T00:00:00Z"), "cut_at"),
        (proration(cut="2026-03-10T00:00:00.5Z"), "cut_at"),
        (E.RunProrationRequest(subscription_id="sub_1"), "period_start"),
        (proration(plan_snapshot=E.PlanSnapshot()), "plan_snapshot"),
    ):
        code, details = status_of(engine(api).RunProration, request, metadata=api.auth())
        assert (code, details.split(":")[0].split(".")[0]) == (INVALID, field), details
    bad_price = proration()
    bad_price.plan_snapshot.base_price = "4,9"
    code, details = status_of(engine(api).RunProration, bad_price, metadata=api.auth())
    assert (code, details.startswith("plan_snapshot.base_price")) == (INVALID, True), details


@pytest.mark.usefixtures("subscribed")
def test_discount_and_tax_take_the_tenants_terms(api: Api) -> None:
    line = E.ChargeComponent(type=I.INVOICE_LINE_ITEM_TYPE_RECURRING, amount=usd(4900), description="fee")
    request = E.ApplyDiscountRequest(
        subscription_id="sub_1", line_items=[line], subtotal=usd(4900), coupon_code="WELCOME10"
    )
    result = engine(api).ApplyDiscount(request, metadata=api.auth()).result
    assert (result.discount_total, [d.amount for d in result.discount_lines]) == (usd(490), [usd(-490)])
    assert result.discount_lines[0].type == I.INVOICE_LINE_ITEM_TYPE_DISCOUNT
    taxed = E.ApplyTaxRequest(subscription_id="sub_1", subtotal=usd(4900), discount_total=usd(490), region_code="SG")
    assert engine(api).ApplyTax(taxed, metadata=api.auth()).result.tax_total == usd(397)  # 9% of 44.10
    taxed.tax_inclusive = True
    assert engine(api).ApplyTax(taxed, metadata=api.auth()).result.tax_total == usd(364)  # 44.10 − 44.10/1.09
    unknown = E.ApplyDiscountRequest(subscription_id="sub_1", subtotal=usd(100), coupon_code="NOPE")
    assert status_of(engine(api).ApplyDiscount, unknown, metadata=api.auth())[0] == NOT_FOUND
    wrong = (
        (
            E.ApplyDiscountRequest(
                subscription_id="sub_1", line_items=[line], subtotal=usd(1), coupon_code="WELCOME10"
            ),
            "subtotal",
        ),
        (E.ApplyDiscountRequest(subscription_id="sub_1", subtotal=usd(100)), "coupon_code"),
        (E.ApplyTaxRequest(subscription_id="sub_1", subtotal=usd(100), discount_total=usd(101)), "discount_total"),
        (
            E.ApplyTaxRequest(subscription_id="sub_1", subtotal=Money(units=100, currency_code="EUR")),
            "subtotal.currency_code",
        ),
        (E.ApplyTaxRequest(subscription_id="sub_1"), "subtotal"),
        (
            E.ApplyDiscountRequest(
                subscription_id="sub_1", line_items=[E.ChargeComponent()], subtotal=usd(1), coupon_code="WELCOME10"
            ),
            "line_items[0].type",
        ),
    )
    calls = {E.ApplyDiscountRequest: engine(api).ApplyDiscount, E.ApplyTaxRequest: engine(api).ApplyTax}
    for bad, field in wrong:
        code, details = status_of(calls[type(bad)], bad, metadata=api.auth())
        assert (code, details.split(":")[0]) == (INVALID, field), details


@pytest.mark.usefixtures("subscribed")
def test_apply_credit_uses_the_balance_without_spending_it(api: Api) -> None:
    credits = credit_pb2_grpc.CreditServiceStub(api.channel)  # type: ignore[no-untyped-call]
    note = C.CreateCreditNoteRequest(subscription_id="sub_1", type=C.CREDIT_NOTE_TYPE_BALANCE, amount=usd(1500))
    credits.CreateCreditNote(note, metadata=api.auth())
    for _ in range(2):  # asking twice answers the same: nothing is used up
        result = engine(api).ApplyCredit(
            E.ApplyCreditRequest(subscription_id="sub_1", total=usd(1110)), metadata=api.auth()
        )
        assert (result.result.credits_applied, result.result.amount_due, result.result.remaining_balance) == (
            usd(1110),
            usd(0),
            usd(390),
        )
    paid = E.ApplyCreditRequest(subscription_id="sub_1", total=usd(1110), amount_paid=usd(1000))
    assert engine(api).ApplyCredit(paid, metadata=api.auth()).result.credits_applied == usd(110)
    for bad, field in (
        (E.ApplyCreditRequest(subscription_id="sub_1"), "total"),
        (E.ApplyCreditRequest(subscription_id="sub_1", total=usd(-1)), "total.units"),
        (E.ApplyCreditRequest(total=usd(1)), "subscription_id"),
    ):
        code, details = status_of(engine(api).ApplyCredit, bad, metadata=api.auth())
        assert (code, details.split(":")[0]) == (INVALID, field), details


@pytest.mark.usefixtures("subscribed")
def test_another_tenants_subscription_is_not_found(api: Api) -> None:
    for call, request in engine_calls(api):
        code, details = status_of(call, request, metadata=api.auth("t2"))
        assert (code, details) == (NOT_FOUND, "subscription_id: no subscription 'sub_1'"), call


def engine_calls(api: Api) -> list[tuple[Any, Any]]:
    """One valid request of t1's to every served InvoiceEngineService RPC."""
    return [
        (engine(api).RunProration, proration()),
        (
            engine(api).ApplyDiscount,
            E.ApplyDiscountRequest(subscription_id="sub_1", subtotal=usd(1), coupon_code="WELCOME10"),
        ),
        (engine(api).ApplyTax, E.ApplyTaxRequest(subscription_id="sub_1", subtotal=usd(1))),
        (engine(api).ApplyCredit, E.ApplyCreditRequest(subscription_id="sub_1", total=usd(1))),
        (engine(api).BuildChargesFromRating, charges_request()),
        (engine(api).BuildInvoice, january(E.BuildInvoiceRequest(subscription_id="sub_1"))),
        (engine(api).FinalizeInvoice, january(E.FinalizeInvoiceRequest(subscription_id="sub_1", currency_code="USD"))),
        (
            engine(api).OpenBillingPeriod,
            january(E.OpenBillingPeriodRequest(subscription_id="sub_1"), "period_start", "period_end"),
        ),
        (
            engine(api).CloseBillingPeriod,
            E.CloseBillingPeriodRequest(subscription_id="sub_1", billing_period_id="sub_1@2026-01-01T00:00:00Z"),
        ),
    ]


def charges_request() -> E.BuildChargesFromRatingRequest:
    """A rating of sub_1 on pro v1 without usage, and its snapshot."""
    result = R.RatingResult(subscription_id="sub_1", plan_code="pro", plan_version=1, proration="1")
    result.period_start.FromJsonString("2026-01-01T00:00:00Z")
    result.period_end.FromJsonString("2026-02-01T00:00:00Z")
    result.rated_at.FromJsonString("2026-02-01T00:00:00Z")
    return E.BuildChargesFromRatingRequest(subscription_id="sub_1", rating_result=result, plan_snapshot=pro_snapshot())


def january(message: Any, start: str = "billing_period_start", end: str = "billing_period_end") -> Any:
    getattr(message, start).FromJsonString(JANUARY[0])
    getattr(message, end).FromJsonString(JANUARY[1])
    return message


def number(api: Api, tenant: str = "t1") -> str:
    request = E.GenerateInvoiceNumberRequest()
    return str(engine(api).GenerateInvoiceNumber(request, metadata=api.auth(tenant)).invoice_number)


@pytest.mark.usefixtures("subscribed")
def test_finalize_invoice_stores_the_chained_steps_when_they_are_the_ledgers_own(api_usage: Api) -> None:
    api = api_usage
    ingest(api, [("sub_1", "api_calls", 3000, "2026-01-15T00:00:00")])
    dry = api.invoices.GenerateInvoiceForSubscription(generate(period=JANUARY), metadata=api.auth()).invoice
    built = engine(api).BuildInvoice(january(E.BuildInvoiceRequest(subscription_id="sub_1")), metadata=api.auth())
    assert [(x.type, x.amount, x.description) for x in built.line_items] == [
        (x.type, x.amount, x.description) for x in dry.line_items
    ]
    assert (built.subtotal, built.discount_total, built.tax_total, built.total) == (
        dry.subtotal,
        dry.discount_total,
        dry.tax_total,
        dry.total,
    )
    # the steps one by one, as a client composes the invoice
    rated = api.rating.RateSubscription(rate("sub_1", *JANUARY), metadata=api.auth()).result
    charges = engine(api).BuildChargesFromRating(
        E.BuildChargesFromRatingRequest(subscription_id="sub_1", rating_result=rated, plan_snapshot=pro_snapshot()),
        metadata=api.auth(),
    )
    discount = (
        engine(api)
        .ApplyDiscount(
            E.ApplyDiscountRequest(subscription_id="sub_1", subtotal=charges.subtotal, coupon_code="WELCOME10"),
            metadata=api.auth(),
        )
        .result
    )
    tax = (
        engine(api)
        .ApplyTax(
            E.ApplyTaxRequest(
                subscription_id="sub_1",
                subtotal=charges.subtotal,
                discount_total=discount.discount_total,
                region_code="ID",
            ),
            metadata=api.auth(),
        )
        .result
    )
    total = usd(charges.subtotal.units - discount.discount_total.units + tax.tax_total.units)
    credit = engine(api).ApplyCredit(E.ApplyCreditRequest(subscription_id="sub_1", total=total), metadata=api.auth())
    finalize = january(
        E.FinalizeInvoiceRequest(
            subscription_id="sub_1",
            line_items=charges.line_items,
            discounts=discount.discount_lines,
            tax_lines=tax.tax_lines,
            subtotal=charges.subtotal,
            discount_total=discount.discount_total,
            tax_total=tax.tax_total,
            total=total,
            credits_applied=credit.result.credits_applied,
            currency_code="USD",
        )
    )
    assert number(api) == number(api) == "INV-2026-000001"  # a preview takes nothing
    wrong = E.FinalizeInvoiceRequest()
    wrong.CopyFrom(finalize)
    wrong.total.units += 1
    code, details = status_of(engine(api).FinalizeInvoice, wrong, metadata=api.auth())
    assert (code, details.split(":")[0]) == (grpc.StatusCode.FAILED_PRECONDITION, "total"), details
    wrong.CopyFrom(finalize)
    wrong.tax_lines[0].amount.units -= 1
    code, details = status_of(engine(api).FinalizeInvoice, wrong, metadata=api.auth())
    assert (code, details.split(":")[0]) == (grpc.StatusCode.FAILED_PRECONDITION, "tax_lines[0]"), details
    assert api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices == []
    assert number(api) == "INV-2026-000001"  # the refused ones took no number
    done = engine(api).FinalizeInvoice(finalize, metadata=api.auth())
    assert (done.invoice_number, done.status, done.total, done.amount_due) == (
        "INV-2026-000001",
        I.INVOICE_STATUS_PENDING,
        dry.total,
        dry.amount_due,
    )
    stored = api.invoices.GetInvoice(I.GetInvoiceRequest(id=done.invoice_id), metadata=api.auth()).invoice
    assert [(x.type, x.amount) for x in stored.line_items] == [(x.type, x.amount) for x in dry.line_items]
    assert engine(api).FinalizeInvoice(finalize, metadata=api.auth()) == done  # a retry: the same invoice
    assert (number(api), number(api, "t2")) == ("INV-2026-000002", "INV-2026-000001")
    code, _ = status_of(engine(api).FinalizeInvoice, finalize, metadata=api.auth("t2"))
    assert code == NOT_FOUND
    named = E.GenerateInvoiceNumberRequest(tenant_id="t1")
    assert status_of(engine(api).GenerateInvoiceNumber, named, metadata=api.auth("t2"))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert status_of(engine(api).GenerateInvoiceNumber, named)[0] == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.usefixtures("subscribed")
def test_billing_periods_open_with_the_calendar_and_close_into_their_invoice(api_usage: Api) -> None:
    api = api_usage
    march = E.OpenBillingPeriodRequest(subscription_id="sub_1")
    march.period_start.FromJsonString("2026-03-01T00:00:00Z")
    march.period_end.FromJsonString("2026-04-01T00:00:00Z")
    opened = engine(api).OpenBillingPeriod(march, metadata=api.auth()).billing_period
    assert (opened.id, opened.status) == ("sub_1@2026-03-01T00:00:00Z", B.BILLING_PERIOD_STATUS_OPEN)
    short = E.OpenBillingPeriodRequest()
    short.CopyFrom(march)
    short.period_end.FromJsonString("2026-03-15T00:00:00Z")
    old = january(E.OpenBillingPeriodRequest(subscription_id="sub_1"), "period_start", "period_end")
    close = E.CloseBillingPeriodRequest(subscription_id="sub_1", billing_period_id="sub_1@2026-01-01T00:00:00Z")
    early = E.CloseBillingPeriodRequest()
    early.CopyFrom(close)
    early.closed_at.FromJsonString("2026-01-15T00:00:00Z")
    for call, request, code, field in (
        (engine(api).OpenBillingPeriod, old, grpc.StatusCode.FAILED_PRECONDITION, "period_start"),
        (engine(api).OpenBillingPeriod, short, grpc.StatusCode.FAILED_PRECONDITION, "period_end"),
        (
            engine(api).CloseBillingPeriod,
            E.CloseBillingPeriodRequest(subscription_id="sub_1", billing_period_id=opened.id),
            grpc.StatusCode.FAILED_PRECONDITION,
            "billing_period_id",
        ),
        (engine(api).CloseBillingPeriod, early, grpc.StatusCode.FAILED_PRECONDITION, "closed_at"),
        (
            engine(api).CloseBillingPeriod,
            E.CloseBillingPeriodRequest(subscription_id="sub_1", billing_period_id="sub_1@2026-01-02T00:00:00Z"),
            NOT_FOUND,
            "billing_period_id",
        ),
    ):
        got, details = status_of(call, request, metadata=api.auth())
        assert (got, details.split(":")[0]) == (code, field), details
    assert status_of(engine(api).CloseBillingPeriod, close, metadata=api.auth("t2"))[0] == NOT_FOUND
    assert api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices == []
    closed = engine(api).CloseBillingPeriod(close, metadata=api.auth()).billing_period
    assert (closed.id, closed.status) == (close.billing_period_id, B.BILLING_PERIOD_STATUS_INVOICED)
    (invoice,) = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices
    assert (closed.invoice_id, invoice.invoice_number) == (invoice.id, "INV-2026-000001")
    assert engine(api).CloseBillingPeriod(close, metadata=api.auth()).billing_period == closed  # once
    listed = billing(api).ListBillingPeriods(B.ListBillingPeriodsRequest(subscription_id="sub_1"), metadata=api.auth())
    assert [p.status for p in listed.billing_periods] == [
        B.BILLING_PERIOD_STATUS_INVOICED,
        B.BILLING_PERIOD_STATUS_CLOSED,
        B.BILLING_PERIOD_STATUS_OPEN,
    ]


def test_build_charges_from_a_rating_gives_the_invoice_lines(api_usage: Api) -> None:
    """A RateSubscription answer and the plan snapshot give the lines the dry-run invoice carries."""
    api = api_usage
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    request = S.CreateSubscriptionRequest(id="sub_1", plan_code="pro")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth())
    ingest(
        api, [("sub_1", "api_calls", 25_000, "2026-01-15T00:00:00"), ("sub_1", "storage_gb", 31, "2026-01-20T00:00:00")]
    )
    rated = api.rating.RateSubscription(rate("sub_1", *JANUARY), metadata=api.auth()).result
    built = engine(api).BuildChargesFromRating(
        E.BuildChargesFromRatingRequest(subscription_id="sub_1", rating_result=rated, plan_snapshot=pro_snapshot()),
        metadata=api.auth(),
    )
    invoice = api.invoices.GenerateInvoiceForSubscription(generate(period=JANUARY), metadata=api.auth()).invoice
    charges = [
        x for x in invoice.line_items if x.type in (I.INVOICE_LINE_ITEM_TYPE_RECURRING, I.INVOICE_LINE_ITEM_TYPE_USAGE)
    ]
    fields = ("type", "description", "amount", "quantity", "unit_price", "metric_code")
    assert [[getattr(x, f) for f in fields] + [dict(x.metadata)] for x in built.line_items] == [
        [getattr(x, f) for f in fields] + [dict(x.metadata)] for x in charges
    ]
    assert built.subtotal == invoice.subtotal and len(built.line_items) == 3
    trial = E.BuildChargesFromRatingRequest(subscription_id="sub_1", rating_result=rated, plan_snapshot=pro_snapshot())
    trial.rating_result.proration = "0"  # a trial's share: no base fee, as on a trial invoice
    types = [x.type for x in engine(api).BuildChargesFromRating(trial, metadata=api.auth()).line_items]
    assert I.INVOICE_LINE_ITEM_TYPE_RECURRING not in types
    other_version = E.BuildChargesFromRatingRequest(
        subscription_id="sub_1", rating_result=rated, plan_snapshot=pro_snapshot()
    )
    other_version.plan_snapshot.plan_version = 2
    broken = E.BuildChargesFromRatingRequest(subscription_id="sub_1", rating_result=rated, plan_snapshot=pro_snapshot())
    del broken.rating_result.items[0].metadata["billable_units"]
    for request, field in (
        (other_version, "rating_result.plan_code"),
        (broken, "rating_result.items[0].metadata"),
        (E.BuildChargesFromRatingRequest(subscription_id="sub_1", plan_snapshot=pro_snapshot()), "rating_result"),
    ):
        code, details = status_of(engine(api).BuildChargesFromRating, request, metadata=api.auth())
        assert (code, details.split(":")[0]) == (INVALID, field), details
    code, _ = status_of(engine(api).BuildChargesFromRating, other_version, metadata=api.auth("t2"))
    assert code == NOT_FOUND
