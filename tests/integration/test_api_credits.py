"""CreditService over the wire: a BALANCE note reduces what the next invoices finalized by the real
path ask for and the rest carries forward; a retry with its idempotency key credits once; notes
list by subscription and invoice; ADJUSTMENT and REFUND, which would change nothing, are refused."""

from __future__ import annotations

import grpc
import pytest

from schemas.generated.smallbiznis.common.v1.money_pb2 import Money
from schemas.generated.smallbiznis.credit.v1 import credit_pb2 as C
from schemas.generated.smallbiznis.credit.v1 import credit_pb2_grpc
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import NOW, Api, status_of
from tests.integration.test_api_invoices import invoice_periods

pytestmark = pytest.mark.integration
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def credits(api: Api) -> credit_pb2_grpc.CreditServiceStub:
    return credit_pb2_grpc.CreditServiceStub(api.channel)  # type: ignore[no-untyped-call]


def balance(units: int, key: str = "", sub: str = "sub_1", **fields: object) -> C.CreateCreditNoteRequest:
    defaults = {"type": C.CREDIT_NOTE_TYPE_BALANCE, "amount": Money(units=units, currency_code="USD")}
    return C.CreateCreditNoteRequest(subscription_id=sub, idempotency_key=key, **{**defaults, **fields})  # type: ignore[arg-type]


@pytest.fixture
def subscribed(api: Api) -> None:
    plan = P.Plan(code="flat", currency_code="USD", base_price="10")
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=plan), metadata=api.auth())
    request = S.CreateSubscriptionRequest(id="sub_1", plan_code="flat")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth())


@pytest.mark.usefixtures("subscribed")
def test_a_balance_note_reduces_the_next_invoices_once_even_when_retried(api: Api) -> None:
    first = credits(api).CreateCreditNote(balance(1500, key="k1", reason="goodwill"), metadata=api.auth()).credit_note
    assert (first.subscription_id, first.type, first.amount.units, first.reason) == (
        "sub_1",
        C.CREDIT_NOTE_TYPE_BALANCE,
        1500,
        "goodwill",
    )
    assert (first.tenant_id, first.created_at.ToJsonString()) == ("t1", "2026-03-10T12:00:00Z")
    api.clock.advance_to(NOW.replace(hour=13))
    retried = credits(api).CreateCreditNote(balance(1500, key="k1", reason="goodwill"), metadata=api.auth())
    assert retried.credit_note == first  # the same note, not a second credit
    code, details = status_of(credits(api).CreateCreditNote, balance(900, key="k1"), metadata=api.auth())
    assert (code, details.startswith("idempotency_key")) == (grpc.StatusCode.ALREADY_EXISTS, True)
    invoice_periods(api, "sub_1", 2)
    invoices = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices
    # 10.00 + the default PPN 11% = 11.10 a month; 15.00 of balance: 11.10 on the first, 3.90 on the second
    assert [(i.total.units, i.credits_applied.units, i.amount_due.units) for i in invoices] == [
        (1110, 1110, 0),
        (1110, 390, 720),
    ]
    assert invoices[0].status == I.INVOICE_STATUS_PAID
    noted = credits(api).CreateCreditNote(balance(100, invoice_id=invoices[1].id), metadata=api.auth()).credit_note
    assert noted.invoice_id == invoices[1].id
    by_invoice = credits(api).ListCreditNotes(C.ListCreditNotesRequest(invoice_id=invoices[1].id), metadata=api.auth())
    assert [n.id for n in by_invoice.credit_notes] == [noted.id]
    seen, token = [], ""
    while True:
        page = credits(api).ListCreditNotes(
            C.ListCreditNotesRequest(page_size=1, page_token=token), metadata=api.auth()
        )
        seen += [n.id for n in page.credit_notes]
        if not (token := page.next_page_token):
            break
    assert seen == [first.id, noted.id]
    assert credits(api).ListCreditNotes(C.ListCreditNotesRequest(), metadata=api.auth("t2")).credit_notes == []


@pytest.mark.usefixtures("subscribed")
@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (balance(100, type=C.CREDIT_NOTE_TYPE_UNSPECIFIED), INVALID, "type: is required"),
        (balance(100, type=C.CREDIT_NOTE_TYPE_REFUND), grpc.StatusCode.UNIMPLEMENTED, "type: only BALANCE"),
        (balance(100, type=C.CREDIT_NOTE_TYPE_ADJUSTMENT), grpc.StatusCode.UNIMPLEMENTED, "type: only BALANCE"),
        (balance(100, sub=""), INVALID, "subscription_id: is required"),
        (balance(100, sub="sub_nope"), grpc.StatusCode.NOT_FOUND, "subscription_id: no subscription"),
        (balance(0), INVALID, "amount.units: must be above 0"),
        (balance(-5), INVALID, "amount.units"),
        (
            C.CreateCreditNoteRequest(
                subscription_id="sub_1", type=C.CREDIT_NOTE_TYPE_BALANCE, amount=Money(units=1, currency_code="IDR")
            ),
            INVALID,
            "amount.currency_code: must be the subscription's plan currency USD",
        ),
        (
            C.CreateCreditNoteRequest(subscription_id="sub_1", type=C.CREDIT_NOTE_TYPE_BALANCE),
            INVALID,
            "amount: is required",
        ),
        (balance(100, invoice_id="12345"), grpc.StatusCode.NOT_FOUND, "invoice_id: no invoice"),
        (balance(100, metadata={"a": "b"}), INVALID, "metadata: is not stored"),
        (balance(100, key="k" * 300), INVALID, "idempotency_key"),
    ],
)
def test_a_bad_credit_note_is_refused_naming_the_field(
    api: Api, request_: C.CreateCreditNoteRequest, code: grpc.StatusCode, message: str
) -> None:
    got, details = status_of(credits(api).CreateCreditNote, request_, metadata=api.auth())
    assert (got, details.startswith(message)) == (code, True), details
    assert credits(api).ListCreditNotes(C.ListCreditNotesRequest(), metadata=api.auth()).credit_notes == []


@pytest.mark.usefixtures("subscribed")
def test_another_tenants_subscription_and_invoice_are_not_found(api: Api) -> None:
    invoice_periods(api, "sub_1", 1)
    invoice_id = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices[0].id
    t2 = api.auth("t2")
    assert status_of(credits(api).CreateCreditNote, balance(100), metadata=t2)[0] == grpc.StatusCode.NOT_FOUND
    listed = C.ListCreditNotesRequest(invoice_id=invoice_id)
    assert status_of(credits(api).ListCreditNotes, listed, metadata=t2)[0] == grpc.StatusCode.NOT_FOUND
    assert credits(api).ListCreditNotes(C.ListCreditNotesRequest(), metadata=api.auth()).credit_notes == []
