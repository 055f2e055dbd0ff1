"""Keys and tenants over the wire: every served RPC without a valid key (none, malformed, a wrong
secret, revoked, another scheme) is UNAUTHENTICATED, while health and reflection stay open; with
another tenant's key, every id answers NOT_FOUND as if it did not exist and nothing changes; an
RPC not built answers UNIMPLEMENTED."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from sqlalchemy import text

from billing.api.keys import parse_key
from billing.api.server import SERVED
from invoicing.ledger.api_keys import PostgresApiKeys
from schemas.generated.smallbiznis.common.v1.money_pb2 import Money
from schemas.generated.smallbiznis.credit.v1 import credit_pb2 as C
from schemas.generated.smallbiznis.credit.v1 import credit_pb2_grpc
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from schemas.generated.smallbiznis.tax.v1 import tax_pb2 as T
from schemas.generated.smallbiznis.tax.v1 import tax_pb2_grpc
from schemas.generated.smallbiznis.usage.v1 import usage_pb2 as U
from tests.api_harness import Api, pro_plan, status_of
from tests.integration.test_api_billing import billing_calls
from tests.integration.test_api_generate import generate
from tests.integration.test_api_ingest import record as usage_record
from tests.integration.test_api_invoice_engine import engine_calls
from tests.integration.test_api_invoices import invoice_periods
from tests.integration.test_api_rating import rate
from tests.integration.test_api_usage import listing as usage_listing
from tests.integration.test_api_usage import summary, usage

pytestmark = pytest.mark.integration
NOT_FOUND, UNAUTHENTICATED = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED
LATER = Timestamp(seconds=1_775_001_600)  # 2026-04-01T00:00:00Z, after the test clock's now


@pytest.fixture
def api(api_usage: Api) -> Api:
    """The server with its usage store: every served RPC answers."""
    return api_usage


@pytest.fixture
def t1_data(api: Api) -> str:
    """t1's plan, subscription and invoice; the invoice's id."""
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    request = S.CreateSubscriptionRequest(id="sub_1", plan_code="pro")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth())
    invoice_periods(api, "sub_1", 1)
    return str(api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices[0].id)


def served_calls(api: Api, invoice_id: str = "1") -> list[tuple[Any, Any]]:
    """One valid request to every RPC ``billing serve`` implements."""
    tax = tax_pb2_grpc.TaxServiceStub(api.channel)  # type: ignore[no-untyped-call]
    credit = credit_pb2_grpc.CreditServiceStub(api.channel)  # type: ignore[no-untyped-call]
    return [
        (api.pricing.CreatePlan, P.CreatePlanRequest(plan=pro_plan("other"))),
        (api.pricing.GetPlan, P.GetPlanRequest(id="pro@1")),
        (api.pricing.GetPlanByCode, P.GetPlanByCodeRequest(code="pro")),
        (api.pricing.ListPlans, P.ListPlansRequest()),
        (api.subscriptions.CreateSubscription, S.CreateSubscriptionRequest(plan_code="pro")),
        (api.subscriptions.GetSubscription, S.GetSubscriptionRequest(id="sub_1")),
        (api.subscriptions.ListSubscriptions, S.ListSubscriptionsRequest()),
        (api.subscriptions.CancelSubscription, S.CancelSubscriptionRequest(id="sub_1")),
        (api.subscriptions.ChangeSubscriptionPlan, S.ChangeSubscriptionPlanRequest(id="sub_1", new_plan_code="pro")),
        (api.subscriptions.CancelSubscription, S.CancelSubscriptionRequest(id="sub_1", at_period_end=True)),
        (api.subscriptions.CancelSubscription, S.CancelSubscriptionRequest(id="sub_1", effective_at=LATER)),
        (
            api.subscriptions.ChangeSubscriptionPlan,
            S.ChangeSubscriptionPlanRequest(id="sub_1", new_plan_code="pro", effective_at=LATER),
        ),
        (api.invoices.GetInvoice, I.GetInvoiceRequest(id=invoice_id)),
        (api.invoices.ListInvoices, I.ListInvoicesRequest()),
        (tax.ListTaxRules, T.ListTaxRulesRequest()),
        (tax.CalculateTax, T.TaxCalculationRequest(subtotal=Money(units=100, currency_code="USD"))),
        (credit.CreateCreditNote, C.CreateCreditNoteRequest(subscription_id="sub_1", type=C.CREDIT_NOTE_TYPE_BALANCE)),
        (credit.ListCreditNotes, C.ListCreditNotesRequest()),
        *engine_calls(api),
        (api.rating.RateSubscription, rate("sub_1", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")),
        (api.invoices.GenerateInvoiceForSubscription, generate("sub_1")),
        (api.invoices.GenerateInvoiceForSubscription, generate("sub_1", dry_run=False)),
        (usage(api).GetUsageSummary, summary(subscription_id="sub_1")),
        (usage(api).ListUsageMetrics, U.ListUsageMetricsRequest()),
        (usage(api).ListUsage, usage_listing(subscription_id="sub_1")),
        (usage(api).IngestUsage, U.IngestUsageRequest(record=usage_record("k1", sub="sub_1"))),
        *billing_calls(api),
    ]


def snapshot(api: Api) -> tuple[Any, ...]:
    auth = api.auth()
    return (
        api.pricing.ListPlans(P.ListPlansRequest(), metadata=auth),
        api.subscriptions.ListSubscriptions(S.ListSubscriptionsRequest(), metadata=auth),
        api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=auth),
    )


def test_every_served_rpc_needs_a_valid_key(api: Api, t1_data: str) -> None:
    key = api.keys["t1"]
    presented = parse_key(key)
    assert presented is not None
    wrong_secret = f"sbk_{presented.key_id}_{'0' * 64}"
    before = snapshot(api)
    for metadata in (
        [],
        [("authorization", "Bearer")],
        [("authorization", "Bearer not-a-key")],
        [("authorization", f"Basic {key}")],
        [("authorization", f"Bearer {wrong_secret}")],
        [("x-api-key", key)],
    ):
        for call, request in served_calls(api, t1_data):
            code, details = status_of(call, request, metadata=metadata)
            assert (code, details) == (UNAUTHENTICATED, "authorization: a valid 'Bearer KEY' is required"), call
    assert snapshot(api) == before
    PostgresApiKeys(api.engine).revoke(presented.key_id)
    for call, request in served_calls(api, t1_data):
        assert status_of(call, request, metadata=[("authorization", f"Bearer {key}")])[0] == UNAUTHENTICATED
    assert api.pricing.ListPlans(P.ListPlansRequest(), metadata=api.auth("t2")).plans == []  # t2's key still works


def test_health_and_reflection_answer_without_a_key(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", *SERVED):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(api.channel))
    for service in SERVED:
        assert pool.FindServiceByName(service).full_name == service


def test_another_tenants_ids_are_not_found_and_nothing_changes(api: Api, t1_data: str) -> None:
    before = snapshot(api)
    t2 = api.auth("t2")
    by_id = [
        (call, request)
        for call, request in served_calls(api, t1_data)
        if type(request).DESCRIPTOR.name.startswith(
            (
                "Get",
                "Cancel",
                "Change",
                "RunProration",
                "Apply",
                "Rate",
                "Generate",
                "ListUsageR",
                "Ingest",
                "ListBillingP",
                "BuildCharges",
                "BuildInvoice",
                "FinalizeInvoice",
                "OpenBilling",
                "CloseBilling",
                "OnSubscription",
                "RecordUsage",
            )
        )
    ]
    # GetPlan, GetPlanByCode, GetSubscription, Cancel, ChangeSubscriptionPlan, GetInvoice, the
    # engine's RunProration, ApplyDiscount, ApplyTax, ApplyCredit, RateSubscription,
    # GenerateInvoiceForSubscription (a dry run and a stored one), GetUsageSummary, ListUsage, IngestUsage,
    # GetCurrentBillingPeriod, ListBillingPeriods, GetBalance, GetTrialStatus, OnSubscriptionCreated,
    # RecordUsage, BuildChargesFromRating, BuildInvoice, FinalizeInvoice, OpenBillingPeriod and
    # CloseBillingPeriod; Cancel at period end and at an instant, and a plan change at an instant
    assert len(by_id) == 30
    for call, request in by_id:
        code, details = status_of(call, request, metadata=t2)
        assert code == NOT_FOUND, (call, details)
        assert "t1" not in details
    for listing, request in (
        (api.pricing.ListPlans, P.ListPlansRequest()),
        (api.invoices.ListInvoices, I.ListInvoicesRequest()),
    ):
        assert listing(request, metadata=t2).ListFields() == []  # nothing of t1's is listed
    assert api.subscriptions.ListSubscriptions(S.ListSubscriptionsRequest(), metadata=t2).subscriptions == []
    named = S.ListSubscriptionsRequest(tenant_id="t1")
    assert status_of(api.subscriptions.ListSubscriptions, named, metadata=t2)[0] == grpc.StatusCode.PERMISSION_DENIED
    as_t1 = P.CreatePlanRequest(plan=pro_plan())
    as_t1.plan.tenant_id = "t1"
    assert status_of(api.pricing.CreatePlan, as_t1, metadata=t2)[0] == grpc.StatusCode.PERMISSION_DENIED
    # ids are unique across tenants: t1's id is taken for t2 too, and stays t1's
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=t2)
    taken = S.CreateSubscriptionRequest(id="sub_1", plan_code="pro")
    assert status_of(api.subscriptions.CreateSubscription, taken, metadata=t2)[0] == grpc.StatusCode.ALREADY_EXISTS
    assert snapshot(api) == before
    own = api.pricing.GetPlan(P.GetPlanRequest(id="pro@1"), metadata=t2).plan
    assert own.tenant_id == "t2"  # the same code in another tenant is another plan


def test_rpcs_not_built_answer_unimplemented(api: Api) -> None:
    assert status_of(api.invoices.GetInvoicePdf, I.GetInvoicePdfRequest(id="1"))[0] == UNAUTHENTICATED


def test_credit_notes_are_the_tenants_own_and_another_tenant_cannot_reach_or_add_to_them(
    api: Api, t1_data: str
) -> None:
    """Each credit note carries its tenant: t2 neither lists, nor replays, nor adds to t1's notes,
    whatever ids it names, and t1's notes and invoice stay as they were."""
    credit = credit_pb2_grpc.CreditServiceStub(api.channel)  # type: ignore[no-untyped-call]
    usd = Money(units=100, currency_code="USD")
    balance = C.CreditNoteType.CREDIT_NOTE_TYPE_BALANCE
    adjustment = C.CreditNoteType.CREDIT_NOTE_TYPE_ADJUSTMENT
    t1, t2 = api.auth(), api.auth("t2")
    credit.CreateCreditNote(
        C.CreateCreditNoteRequest(subscription_id="sub_1", type=balance, amount=usd, idempotency_key="k"), metadata=t1
    )
    credit.CreateCreditNote(
        C.CreateCreditNoteRequest(invoice_id=t1_data, type=adjustment, amount=usd, idempotency_key="a"), metadata=t1
    )
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=t2)
    own = S.CreateSubscriptionRequest(id="sub_2", plan_code="pro")
    own.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(own, metadata=t2)
    t1_notes = credit.ListCreditNotes(C.ListCreditNotesRequest(), metadata=t1).credit_notes
    t1_invoice = api.invoices.GetInvoice(I.GetInvoiceRequest(id=t1_data), metadata=t1).invoice
    assert [(n.tenant_id, n.type) for n in t1_notes] == [("t1", balance), ("t1", adjustment)]
    refused = [
        C.CreateCreditNoteRequest(subscription_id="sub_1", type=balance, amount=usd, idempotency_key="k"),
        C.CreateCreditNoteRequest(subscription_id="sub_2", type=balance, amount=usd, invoice_id=t1_data),
        C.CreateCreditNoteRequest(invoice_id=t1_data, type=adjustment, amount=usd, idempotency_key="a"),
        C.CreateCreditNoteRequest(invoice_id=t1_data, subscription_id="sub_2", type=adjustment, amount=usd),
        C.CreateCreditNoteRequest(invoice_id=t1_data, type=C.CreditNoteType.CREDIT_NOTE_TYPE_REFUND, amount=usd),
    ]
    for request in refused:
        code, details = status_of(credit.CreateCreditNote, request, metadata=t2)
        assert code == NOT_FOUND, (request, details)
        assert "t1" not in details
    for listed in (
        C.ListCreditNotesRequest(),
        C.ListCreditNotesRequest(subscription_id="sub_1"),
        C.ListCreditNotesRequest(page_token=""),
    ):
        assert credit.ListCreditNotes(listed, metadata=t2).credit_notes == []
    by_invoice = C.ListCreditNotesRequest(invoice_id=t1_data)
    assert status_of(credit.ListCreditNotes, by_invoice, metadata=t2)[0] == NOT_FOUND
    named = C.ListCreditNotesRequest(tenant_id="t1")
    assert status_of(credit.ListCreditNotes, named, metadata=t2)[0] == grpc.StatusCode.PERMISSION_DENIED
    as_t1 = C.CreateCreditNoteRequest(tenant_id="t1", subscription_id="sub_1", type=balance, amount=usd)
    assert status_of(credit.CreateCreditNote, as_t1, metadata=t2)[0] == grpc.StatusCode.PERMISSION_DENIED
    # t1's idempotency key on t2's own subscription is t2's own new note, not a replay of t1's
    mine = C.CreateCreditNoteRequest(subscription_id="sub_2", type=balance, amount=usd, idempotency_key="k")
    made = credit.CreateCreditNote(mine, metadata=t2).credit_note
    assert (made.tenant_id, made.subscription_id) == ("t2", "sub_2")
    assert [n.id for n in credit.ListCreditNotes(C.ListCreditNotesRequest(), metadata=t2).credit_notes] == [made.id]
    assert credit.ListCreditNotes(C.ListCreditNotesRequest(), metadata=t1).credit_notes == t1_notes
    assert api.invoices.GetInvoice(I.GetInvoiceRequest(id=t1_data), metadata=t1).invoice == t1_invoice
    with api.engine.connect() as connection:
        stored = connection.execute(text("SELECT tenant_id, subscription_id FROM credit_notes ORDER BY id")).all()
    assert [tuple(row) for row in stored] == [("t1", "sub_1"), ("t1", "sub_1"), ("t2", "sub_2")]
