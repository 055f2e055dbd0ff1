"""PaymentService over the wire on a real PostgreSQL ledger with the DUMMY provider: methods attach
and list per subscription, the default is charged when none is named, a success pays the invoice
(amount_paid, paid_at, PAID) and announces PaymentSucceeded on the outbox in the same
transaction, a decline leaves it payable with the retry the tenant's schedule sets, a retried
request charges once, refunds go through a REFUND credit note, and another tenant sees nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from billing.payments.providers.dummy import DummyProvider
from schemas.generated.smallbiznis.common.v1 import money_pb2 as M
from schemas.generated.smallbiznis.credit.v1 import credit_pb2 as C
from schemas.generated.smallbiznis.credit.v1 import credit_pb2_grpc
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.payment.v1 import payment_pb2 as PM
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import NOW, Api, status_of
from tests.integration.test_api_invoices import invoice_periods
from tests.payments_harness import (
    attach,
    charge,
    invoice_row,
    invoices_of,
    outbox,
    payments_stub,
    worker,
)

pytestmark = pytest.mark.integration
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def test_methods_attach_per_subscription_and_the_newest_default_wins(pay_api: Api) -> None:
    first = attach(pay_api, "sub_1", "tok_declines", default=False)
    assert (first.is_default, first.subscription_id, first.last4, first.exp_month) == (True, "sub_1", "4242", 12)
    second = attach(pay_api, "sub_1", "tok_succeeds")
    attach(pay_api, "sub_2", "tok_succeeds")
    listed = (
        payments_stub(pay_api)
        .ListPaymentMethods(PM.ListPaymentMethodsRequest(subscription_id="sub_1"), metadata=pay_api.auth())
        .payment_methods
    )
    assert [(m.id, m.is_default, m.provider_data["token"]) for m in listed] == [
        (first.id, False, "tok_declines"),
        (second.id, True, "tok_succeeds"),
    ]
    every = payments_stub(pay_api).ListPaymentMethods(PM.ListPaymentMethodsRequest(), metadata=pay_api.auth())
    assert len(every.payment_methods) == 3
    other = payments_stub(pay_api).ListPaymentMethods(PM.ListPaymentMethodsRequest(), metadata=pay_api.auth("t2"))
    assert list(other.payment_methods) == []


def test_a_charge_of_the_default_method_pays_the_invoice_and_announces_it(pay_api: Api, dummy: DummyProvider) -> None:
    method = attach(pay_api, "sub_1", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_1")[0]
    assert invoice.amount_due.units == 1110
    attempt = charge(pay_api, invoice.id)
    assert (attempt.status, attempt.amount.units, attempt.attempt_number, attempt.payment_method_id) == (
        PM.PAYMENT_ATTEMPT_STATUS_SUCCEEDED,
        1110,
        1,
        method.id,
    )
    assert attempt.provider_transaction_id.startswith("dummy_ch_")
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid, row.amount_due, row.paid_at) == ("PAID", 1110, 0, NOW)
    read = pay_api.invoices.GetInvoice(I.GetInvoiceRequest(id=invoice.id), metadata=pay_api.auth()).invoice
    assert (read.status, read.amount_paid.units, read.amount_due.units) == (I.INVOICE_STATUS_PAID, 1110, 0)
    assert read.paid_at.ToDatetime(tzinfo=UTC) == NOW
    (event,) = outbox(pay_api.engine)
    assert (event["type"], event["invoice_number"], event["amount"], event["invoice_status"]) == (
        "PaymentSucceeded",
        invoice.invoice_number,
        {"units": 1110, "currency_code": "USD"},
        "PAID",
    )
    code, details = status_of(charge, pay_api, invoice.id)
    assert (code, details) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"invoice_id: invoice {invoice.invoice_number} is PAID",
    )
    assert len(dummy.charges()) == 1


def test_a_decline_leaves_the_invoice_payable_with_the_next_retry(pay_api: Api) -> None:
    attach(pay_api, "sub_1", "tok_declines")
    invoice = invoices_of(pay_api, "sub_1")[0]
    attempt = charge(pay_api, invoice.id)
    assert (attempt.status, attempt.failure_code) == (PM.PAYMENT_ATTEMPT_STATUS_FAILED, "card_declined")
    assert attempt.next_retry_at.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 11, 12, tzinfo=UTC)  # day 1 of 1,3,5,7
    assert invoice_row(pay_api.engine, invoice.id).status == "PENDING"
    assert [e["type"] for e in outbox(pay_api.engine)] == ["PaymentFailed"]
    second = charge(pay_api, invoice.id)  # charged by hand before the retry: a new attempt, a new key
    assert (second.attempt_number, second.status) == (2, PM.PAYMENT_ATTEMPT_STATUS_FAILED)
    attempts = (
        payments_stub(pay_api)
        .GetPaymentAttempts(PM.GetPaymentAttemptsRequest(invoice_id=invoice.id), metadata=pay_api.auth())
        .payment_attempts
    )
    assert [(a.attempt_number, a.metadata["idempotency_key"]) for a in attempts] == [
        (1, f"t1:{invoice.invoice_number}:attempt-1"),
        (2, f"t1:{invoice.invoice_number}:attempt-2"),
    ]


def test_a_retried_request_answers_its_attempt_and_charges_once(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_1")[0]
    first = charge(pay_api, invoice.id, key="req-1")
    again = charge(pay_api, invoice.id, key="req-1")
    assert again == first
    assert len(dummy.charges()) == 1


def test_a_named_method_is_charged_and_a_missing_default_is_a_precondition(pay_api: Api) -> None:
    invoice = invoices_of(pay_api, "sub_1")[0]
    code, details = status_of(charge, pay_api, invoice.id)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details.startswith("payment_method_id: none given")
    declines = attach(pay_api, "sub_1", "tok_declines")
    succeeds = attach(pay_api, "sub_1", "tok_succeeds", default=False)
    assert charge(pay_api, invoice.id, method=succeeds.id).status == PM.PAYMENT_ATTEMPT_STATUS_SUCCEEDED
    other = attach(pay_api, "sub_2", "tok_succeeds")
    code, details = status_of(charge, pay_api, invoices_of(pay_api, "sub_1")[1].id, "", other.id)
    assert (code, details.startswith("payment_method_id: no payment method")) == (NOT_FOUND, True)
    assert declines.is_default


def test_another_tenant_sees_nothing(pay_api: Api) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_1")[0]
    stub = payments_stub(pay_api)
    request = PM.ChargeInvoiceRequest(invoice_id=invoice.id)
    assert status_of(stub.ChargeInvoice, request, metadata=pay_api.auth("t2"))[0] == NOT_FOUND
    attempts = PM.GetPaymentAttemptsRequest(invoice_id=invoice.id)
    assert status_of(stub.GetPaymentAttempts, attempts, metadata=pay_api.auth("t2"))[0] == NOT_FOUND
    foreign = PM.AttachPaymentMethodRequest(
        subscription_id="sub_1",
        provider=PM.PAYMENT_PROVIDER_DUMMY,
        type=PM.PAYMENT_METHOD_TYPE_CARD,
        provider_payload={"token": "tok_succeeds"},
    )
    assert status_of(stub.AttachPaymentMethod, foreign, metadata=pay_api.auth("t2"))[0] == NOT_FOUND
    assert invoice_row(pay_api.engine, invoice.id).status == "PENDING"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"provider": PM.PAYMENT_PROVIDER_DUMMY, "type": PM.PAYMENT_METHOD_TYPE_CARD},
            "provider_payload.token: is required",
        ),
        ({"type": PM.PAYMENT_METHOD_TYPE_CARD, "provider_payload": {"token": "x"}}, "provider: is required"),
        (
            {
                "provider": PM.PAYMENT_PROVIDER_STRIPE,
                "type": PM.PAYMENT_METHOD_TYPE_CARD,
                "provider_payload": {"token": "x"},
            },
            "provider: STRIPE is not configured on this server",
        ),
        (
            {
                "provider": PM.PAYMENT_PROVIDER_DUMMY,
                "type": PM.PAYMENT_METHOD_TYPE_CARD,
                "provider_payload": {"token": "x", "last4": "42"},
            },
            "provider_payload.last4: must be 4 digits",
        ),
    ],
)
def test_a_bad_method_is_refused_naming_the_field(pay_api: Api, fields: dict[str, object], message: str) -> None:
    request = PM.AttachPaymentMethodRequest(subscription_id="sub_1", **fields)  # type: ignore[arg-type]
    _, details = status_of(payments_stub(pay_api).AttachPaymentMethod, request, metadata=pay_api.auth())
    assert details.startswith(message)
    listed = payments_stub(pay_api).ListPaymentMethods(PM.ListPaymentMethodsRequest(), metadata=pay_api.auth())
    assert list(listed.payment_methods) == []


def test_a_refund_returns_the_money_through_a_refund_credit_note(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_1")[0]
    paid = charge(pay_api, invoice.id)
    refunded = (
        payments_stub(pay_api)
        .RefundInvoice(PM.RefundInvoiceRequest(invoice_id=invoice.id, reason="customer asked"), metadata=pay_api.auth())
        .payment_attempt
    )
    assert (refunded.id, refunded.status) == (paid.id, PM.PAYMENT_ATTEMPT_STATUS_REFUNDED)
    assert invoice_row(pay_api.engine, invoice.id).status == "REFUNDED"
    notes = (
        credit_pb2_grpc.CreditServiceStub(pay_api.channel)
        .ListCreditNotes(  # type: ignore[no-untyped-call]
            C.ListCreditNotesRequest(subscription_id="sub_1"), metadata=pay_api.auth()
        )
        .credit_notes
    )
    assert [(n.type, n.amount.units, n.reason, n.invoice_id) for n in notes] == [
        (C.CREDIT_NOTE_TYPE_REFUND, 1110, "customer asked", invoice.id)
    ]
    assert [e["type"] for e in outbox(pay_api.engine)] == ["PaymentSucceeded", "PaymentRefunded"]
    shown = pay_api.invoices.GetInvoice(I.GetInvoiceRequest(id=invoice.id), metadata=pay_api.auth()).invoice
    assert (shown.status, shown.amount_paid.units, shown.amount_refunded.units) == (
        I.INVOICE_STATUS_REFUNDED,
        1110,
        1110,
    )
    code, _ = status_of(
        payments_stub(pay_api).RefundInvoice, PM.RefundInvoiceRequest(invoice_id=invoice.id), metadata=pay_api.auth()
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # REFUNDED is final
    assert len(dummy.charges()) == 1


def test_concurrent_attaches_leave_one_default(pay_api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        attached = list(pool.map(lambda n: attach(pay_api, "sub_2", f"tok_{n}", default=n % 2 == 0), range(6)))
    assert len({m.id for m in attached}) == 6
    listed = (
        payments_stub(pay_api)
        .ListPaymentMethods(PM.ListPaymentMethodsRequest(subscription_id="sub_2"), metadata=pay_api.auth())
        .payment_methods
    )
    assert len(listed) == 6 and sum(m.is_default for m in listed) == 1


def test_an_unpaid_invoice_is_voided_once_with_its_credit_given_back(pay_api: Api, dummy: DummyProvider) -> None:
    credits = credit_pb2_grpc.CreditServiceStub(pay_api.channel)  # type: ignore[no-untyped-call]
    request = S.CreateSubscriptionRequest(id="sub_3", plan_code="flat", region_code="ID")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    pay_api.subscriptions.CreateSubscription(request, metadata=pay_api.auth())
    prepaid = C.CreateCreditNoteRequest(
        subscription_id="sub_3", type=C.CREDIT_NOTE_TYPE_BALANCE, amount=M.Money(units=300, currency_code="USD")
    )
    credits.CreateCreditNote(prepaid, metadata=pay_api.auth())
    invoice_periods(pay_api, "sub_3", 1)
    [invoice] = invoices_of(pay_api, "sub_3")
    assert (invoice.credits_applied.units, invoice.amount_due.units) == (300, 810)  # 1110 less the 300 prepaid

    void = payments_stub(pay_api).VoidInvoice
    answer = void(PM.VoidInvoiceRequest(invoice_id=invoice.id, reason="billed in error"), metadata=pay_api.auth())
    assert (answer.status, answer.credit_restored.units) == ("INVOICE_STATUS_VOID", 300)
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_due, row.amount_paid) == ("VOID", 0, 0)
    again = void(PM.VoidInvoiceRequest(invoice_id=invoice.id), metadata=pay_api.auth())
    assert (again.status, again.credit_restored.units) == (
        "INVOICE_STATUS_VOID",
        0,
    )  # a replay gives nothing back twice
    balance = [
        (n.type, n.amount.units)
        for n in credits.ListCreditNotes(
            C.ListCreditNotesRequest(subscription_id="sub_3"), metadata=pay_api.auth()
        ).credit_notes
    ]
    assert balance == [(C.CREDIT_NOTE_TYPE_BALANCE, 300), (C.CREDIT_NOTE_TYPE_BALANCE, 300)]  # prepaid, given back
    assert [e["type"] for e in outbox(pay_api.engine)] == ["InvoiceVoided"]

    attach(pay_api, "sub_3", "tok_succeeds")
    pay_api.clock.advance_to(datetime(2026, 4, 1, tzinfo=UTC))
    report = worker(pay_api, dummy).run_once()  # past due: the VOID invoice is neither OVERDUE nor charged
    assert invoice.invoice_number not in report.overdue
    assert invoice.invoice_number not in [a.invoice_number for a in report.charged]
    assert invoice_row(pay_api.engine, invoice.id).status == "VOID"


def test_an_invoice_that_took_money_is_refunded_not_voided(pay_api: Api) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_1")[0]
    charge(pay_api, invoice.id)
    void = payments_stub(pay_api).VoidInvoice
    code, message = status_of(void, PM.VoidInvoiceRequest(invoice_id=invoice.id), metadata=pay_api.auth())
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "refund it" in message
    assert invoice_row(pay_api.engine, invoice.id).status == "PAID"
    other = invoices_of(pay_api, "sub_2")[0]
    code, _ = status_of(void, PM.VoidInvoiceRequest(invoice_id=other.id), metadata=pay_api.auth("t2"))
    assert code == NOT_FOUND and invoice_row(pay_api.engine, other.id).status == "PENDING"


def test_every_payment_rpc_needs_a_key(pay_api: Api) -> None:
    stub = payments_stub(pay_api)
    service = PM.DESCRIPTOR.services_by_name["PaymentService"]
    for method in service.methods:
        request = getattr(PM, method.input_type.name)()
        for metadata in ([], [("authorization", "Bearer not-a-key")]):
            code, _ = status_of(getattr(stub, method.name), request, metadata=metadata)
            assert code == grpc.StatusCode.UNAUTHENTICATED, method.name
    assert len(service.methods) == 6


def test_a_charge_partly_refunded_by_credit_note_is_not_refunded_whole(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_1")[0]
    charge(pay_api, invoice.id)
    note = C.CreateCreditNoteRequest(
        invoice_id=invoice.id, type=C.CREDIT_NOTE_TYPE_REFUND, amount=M.Money(units=100, currency_code="USD")
    )
    credit_pb2_grpc.CreditServiceStub(pay_api.channel).CreateCreditNote(note, metadata=pay_api.auth())  # type: ignore[no-untyped-call]
    refund = payments_stub(pay_api).RefundInvoice
    code, message = status_of(refund, PM.RefundInvoiceRequest(invoice_id=invoice.id), metadata=pay_api.auth())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "refunded by credit notes" in message
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_refunded) == ("PAID", 100)  # 100 returned once, nothing sent to the provider
