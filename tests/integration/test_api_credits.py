"""CreditService over the wire: a BALANCE note reduces what the next invoices finalized by the real
path ask for and the rest carries forward; a retry with its idempotency key credits once; notes
list by subscription and invoice. An ADJUSTMENT note takes its amount off an unpaid invoice's
amount_due (PAID at zero); a REFUND returns money of a PAID invoice's payments (REFUNDED when all
is); neither goes below zero, even when many race on one invoice."""

from __future__ import annotations

import threading

import grpc
import pytest
from sqlalchemy import text

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
        (balance(100, type=C.CREDIT_NOTE_TYPE_REFUND), INVALID, "invoice_id: a REFUND note is against one invoice"),
        (balance(100, type=C.CREDIT_NOTE_TYPE_ADJUSTMENT), INVALID, "invoice_id: a ADJUSTMENT note"),
        (balance(100, type=C.CREDIT_NOTE_TYPE_ADJUSTMENT, invoice_id="77"), grpc.StatusCode.NOT_FOUND, "invoice_id"),
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


def note(kind: int, units: int, invoice_id: str, key: str = "") -> C.CreateCreditNoteRequest:
    amount = Money(units=units, currency_code="USD")
    return C.CreateCreditNoteRequest(invoice_id=invoice_id, type=kind, amount=amount, idempotency_key=key)  # type: ignore[arg-type]


def invoice(api: Api, invoice_id: str) -> I.Invoice:
    return api.invoices.GetInvoice(I.GetInvoiceRequest(id=invoice_id), metadata=api.auth()).invoice


def paid(api: Api, invoice_id: str) -> None:
    """The invoice paid in full by a provider, as payment settlement records it (the payments work)."""
    with api.engine.begin() as connection:
        connection.execute(
            text("UPDATE invoices SET amount_paid = amount_due, amount_due = 0, status = 'PAID' WHERE id = :id"),
            {"id": int(invoice_id)},
        )


ADJUSTMENT, REFUND = C.CREDIT_NOTE_TYPE_ADJUSTMENT, C.CREDIT_NOTE_TYPE_REFUND


@pytest.mark.usefixtures("subscribed")
def test_an_adjustment_reduces_what_an_unpaid_invoice_owes_and_a_refund_returns_what_was_paid(api: Api) -> None:
    invoice_periods(api, "sub_1", 2)
    first, second = (i.id for i in api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices)
    made = credits(api).CreateCreditNote(note(ADJUSTMENT, 300, first, key="a1"), metadata=api.auth()).credit_note
    assert (made.subscription_id, made.invoice_id, made.type) == ("sub_1", first, ADJUSTMENT)
    got = invoice(api, first)
    # lines and totals stay as finalized; what is owed moves
    assert (got.total.units, got.amount_credited.units, got.amount_due.units, got.status) == (
        1110,
        300,
        810,
        I.INVOICE_STATUS_PENDING,
    )
    again = credits(api).CreateCreditNote(note(ADJUSTMENT, 300, first, key="a1"), metadata=api.auth()).credit_note
    assert again == made and invoice(api, first).amount_due.units == 810  # a retry credits once
    code, details = status_of(credits(api).CreateCreditNote, note(ADJUSTMENT, 811, first), metadata=api.auth())
    assert (code, details) == (INVALID, "amount.units: more than the invoice's amount due 810")
    credits(api).CreateCreditNote(note(ADJUSTMENT, 810, first), metadata=api.auth())
    assert (invoice(api, first).amount_due.units, invoice(api, first).status) == (0, I.INVOICE_STATUS_PAID)
    code, details = status_of(credits(api).CreateCreditNote, note(ADJUSTMENT, 1, first), metadata=api.auth())
    assert (code, details.startswith("invoice_id: the invoice is PAID")) == (grpc.StatusCode.FAILED_PRECONDITION, True)
    # nothing of the first was paid in money: there is nothing to refund
    code, _ = status_of(credits(api).CreateCreditNote, note(REFUND, 1, first), metadata=api.auth())
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(credits(api).CreateCreditNote, note(REFUND, 1, second), metadata=api.auth())[0] == (
        grpc.StatusCode.FAILED_PRECONDITION  # PENDING: not paid yet
    )
    paid(api, second)
    credits(api).CreateCreditNote(note(REFUND, 1000, second), metadata=api.auth())
    got = invoice(api, second)
    assert (got.amount_paid.units, got.amount_refunded.units, got.status) == (1110, 1000, I.INVOICE_STATUS_PAID)
    code, details = status_of(credits(api).CreateCreditNote, note(REFUND, 111, second), metadata=api.auth())
    assert (code, details) == (INVALID, "amount.units: more than the invoice's refundable amount 110")
    credits(api).CreateCreditNote(note(REFUND, 110, second), metadata=api.auth())
    assert (invoice(api, second).amount_refunded.units, invoice(api, second).status) == (
        1110,
        I.INVOICE_STATUS_REFUNDED,
    )
    assert status_of(credits(api).CreateCreditNote, note(REFUND, 1, second), metadata=api.auth())[0] == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    listed = credits(api).ListCreditNotes(C.ListCreditNotesRequest(invoice_id=second), metadata=api.auth())
    assert [(n.type, n.amount.units) for n in listed.credit_notes] == [(REFUND, 1000), (REFUND, 110)]
    # neither kind is prepaid balance: the next invoice is not reduced by them
    with api.ledger.session() as session:
        assert session.credit_balance("sub_1", "USD").amount == 0
    # another tenant's key finds no such invoice and changes nothing
    code, _ = status_of(credits(api).CreateCreditNote, note(ADJUSTMENT, 1, second), metadata=api.auth("t2"))
    assert code == grpc.StatusCode.NOT_FOUND and invoice(api, second).amount_refunded.units == 1110


@pytest.mark.usefixtures("subscribed")
def test_racing_adjustments_never_take_an_invoice_below_zero(api: Api) -> None:
    invoice_periods(api, "sub_1", 1)
    (first,) = (i.id for i in api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices)
    codes: list[grpc.StatusCode] = []

    def adjust() -> None:
        try:
            credits(api).CreateCreditNote(note(ADJUSTMENT, 100, first), metadata=api.auth())
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())

    threads = [threading.Thread(target=adjust) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 11.10 owed: eleven notes of 1.00 fit, the rest are refused
    assert sorted(c.name for c in codes) == sorted(["OK"] * 11 + ["INVALID_ARGUMENT"] * 5)
    got = invoice(api, first)
    assert (got.amount_due.units, got.amount_credited.units) == (10, 1100)
