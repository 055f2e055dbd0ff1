"""The Xendit and Midtrans adapters against a local HTTP server that plays each provider and checks
every request as their API references define it: path and method, HTTP Basic with the secret as
the user and an empty password, the idempotency header or order id, the JSON fields, and amounts
as whole rupiah (JSON integers, never ``150000.0``). Timeouts, 5xx, refused credentials and a
closed port raise ProviderUnavailable (the outcome is unknown; the call is retried with the same
key); a provider's refusal is a FAILED charge with its reason."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from billing.payments.providers.midtrans import MidtransProvider, order_id_for, refund_key_for
from billing.payments.providers.xendit import XenditProvider
from invoicing.engine.payments import AttemptStatus, ChargeRequest, RefundRequest, attempt_idempotency_key
from invoicing.ports import ProviderUnavailable
from rating.errors import InvalidValue
from rating.money import Money

pytestmark = pytest.mark.integration

XENDIT_KEY = "xnd_development_secret_for_tests_0123456789"
MIDTRANS_KEY = "SB-Mid-server-secret-for-tests-0123456789"
KEY = attempt_idempotency_key("acme", "INV-2026-000042", 1)


def basic(secret: str) -> str:
    """The Authorization header both providers document: the key as user, an empty password."""
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()


def charge(token: str, amount: int = 150_000, currency: str = "IDR") -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=KEY,
        amount=Money(amount, currency),
        method_token=token,
        customer_reference="sub-7",
        invoice_number="INV-2026-000042",
        description="Usage March 2026",
    )


def sent_json(httpserver: HTTPServer, index: int = -1) -> tuple[str, Any]:
    """The raw body of a request the server received, and its JSON."""
    request = httpserver.log[index][0]
    raw = request.get_data(as_text=True)
    return raw, json.loads(raw)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---- Xendit -------------------------------------------------------------------------------------


@pytest.fixture
def xendit(httpserver: HTTPServer) -> Iterator[XenditProvider]:
    provider = XenditProvider(XENDIT_KEY, base_url=httpserver.url_for("/"), timeout=0.5)
    yield provider
    provider.close()


INVOICE = {
    "id": "579c8d61f23fa4ca35e52da4",
    "external_id": KEY,
    "user_id": "5781d19b2e2385880609791c",
    "status": "PENDING",
    "merchant_name": "Acme",
    "amount": 150000,
    "currency": "IDR",
    "invoice_url": "https://checkout-staging.xendit.co/web/579c8d61f23fa4ca35e52da4",
    "expiry_date": "2026-04-11T12:00:00.000Z",
}


def test_xendit_charge_opens_one_invoice_with_the_attempts_key(httpserver: HTTPServer, xendit: XenditProvider) -> None:
    auth = {"Authorization": basic(XENDIT_KEY)}
    httpserver.expect_ordered_request(
        "/v2/invoices", method="GET", query_string={"external_id": KEY}, headers=auth
    ).respond_with_json([])
    httpserver.expect_ordered_request(
        "/v2/invoices",
        method="POST",
        headers={**auth, "X-IDEMPOTENCY-KEY": KEY, "Content-Type": "application/json"},
        json={
            "external_id": KEY,
            "amount": 150000,
            "currency": "IDR",
            "description": "Usage March 2026",
            "payment_methods": ["BCA", "OVO"],
        },
    ).respond_with_json(INVOICE)

    answer = xendit.charge(charge("BCA, OVO"))

    httpserver.check_assertions()
    assert answer.reference == INVOICE["id"]
    assert answer.status is AttemptStatus.PROCESSING
    assert answer.action_url == INVOICE["invoice_url"]
    raw, body = sent_json(httpserver)
    assert '"amount": 150000,' in raw and isinstance(body["amount"], int)  # whole rupiah, no decimals


def test_xendit_any_method_leaves_the_choice_to_the_invoice_page(
    httpserver: HTTPServer, xendit: XenditProvider
) -> None:
    httpserver.expect_request("/v2/invoices", method="GET").respond_with_json([])
    httpserver.expect_request("/v2/invoices", method="POST").respond_with_json(INVOICE)
    xendit.charge(charge("ANY"))
    _, body = sent_json(httpserver)
    assert "payment_methods" not in body


def test_xendit_retry_answers_with_the_invoice_already_opened(httpserver: HTTPServer, xendit: XenditProvider) -> None:
    """A retry after a timeout (or a crash before our commit) finds the invoice of its external id
    and never opens a second one."""
    paid = {**INVOICE, "status": "PAID", "paid_amount": 150000}
    httpserver.expect_request("/v2/invoices", method="GET", query_string={"external_id": KEY}).respond_with_json([paid])

    answer = xendit.charge(charge("ANY"))

    assert answer.status is AttemptStatus.SUCCEEDED and answer.reference == INVOICE["id"]
    assert [request.method for request, _ in httpserver.log] == ["GET"]


def test_xendit_refusal_is_a_failed_charge_with_its_reason(httpserver: HTTPServer, xendit: XenditProvider) -> None:
    httpserver.expect_request("/v2/invoices", method="GET").respond_with_json([])
    httpserver.expect_request("/v2/invoices", method="POST").respond_with_json(
        {"error_code": "MINIMAL_TRANSFER_AMOUNT_ERROR", "message": "The minimum amount is 10000"}, status=400
    )
    answer = xendit.charge(charge("ANY"))
    assert answer.status is AttemptStatus.FAILED
    assert answer.failure_reason == "Xendit 400 MINIMAL_TRANSFER_AMOUNT_ERROR: The minimum amount is 10000"


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_xendit_unknown_outcomes_raise_provider_unavailable(
    httpserver: HTTPServer, xendit: XenditProvider, status: int
) -> None:
    httpserver.expect_request("/v2/invoices", method="GET").respond_with_json([])
    httpserver.expect_request("/v2/invoices", method="POST").respond_with_json({"error_code": "X"}, status=status)
    with pytest.raises(ProviderUnavailable):
        xendit.charge(charge("ANY"))


def slow(request: Request) -> Response:
    time.sleep(1.0)
    return Response("[]", content_type="application/json")


def test_xendit_timeout_raises_provider_unavailable(httpserver: HTTPServer, xendit: XenditProvider) -> None:
    httpserver.expect_request("/v2/invoices").respond_with_handler(slow)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="in time"):
        xendit.charge(charge("ANY"))
    assert time.monotonic() - started < 0.9


def test_xendit_closed_port_raises_provider_unavailable() -> None:
    provider = XenditProvider(XENDIT_KEY, base_url=f"http://127.0.0.1:{closed_port()}", timeout=0.5)
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        provider.charge(charge("ANY"))


def test_xendit_refund_of_an_invoice(httpserver: HTTPServer, xendit: XenditProvider) -> None:
    refund_key = f"{KEY}:refund-1"
    httpserver.expect_request(
        "/refunds",
        method="POST",
        headers={"Authorization": basic(XENDIT_KEY), "idempotency-key": refund_key},
        json={
            "invoice_id": INVOICE["id"],
            "reference_id": refund_key,
            "amount": 50000,
            "currency": "IDR",
            "reason": "REQUESTED_BY_CUSTOMER",
        },
    ).respond_with_json({"id": "rfd-6f4a377d-a201-437f-9119-f8b00cbbe857", "status": "SUCCEEDED", "amount": 50000})

    answer = xendit.refund(RefundRequest(refund_key, str(INVOICE["id"]), Money(50_000, "IDR"), "requested_by_customer"))

    httpserver.check_assertions()
    assert answer.status is AttemptStatus.REFUNDED and answer.reference.startswith("rfd-")


def test_xendit_free_text_refund_reason_is_others_with_the_text_in_metadata(
    httpserver: HTTPServer, xendit: XenditProvider
) -> None:
    httpserver.expect_request("/refunds", method="POST").respond_with_json({"id": "rfd-1", "status": "PENDING"})
    answer = xendit.refund(RefundRequest("k", "inv", Money(1000, "IDR"), "double billed in March"))
    _, body = sent_json(httpserver)
    assert body["reason"] == "OTHERS" and body["metadata"] == {"reason": "double billed in March"}
    assert answer.status is AttemptStatus.PROCESSING


def test_xendit_refuses_other_currencies_before_calling(httpserver: HTTPServer, xendit: XenditProvider) -> None:
    with pytest.raises(InvalidValue, match=r"amount\.currency"):
        xendit.charge(charge("ANY", 1500, "USD"))
    assert httpserver.log == []


# ---- Midtrans -----------------------------------------------------------------------------------


@pytest.fixture
def midtrans(httpserver: HTTPServer) -> Iterator[MidtransProvider]:
    base = httpserver.url_for("/")
    provider = MidtransProvider(MIDTRANS_KEY, base_url=base, snap_base_url=base, timeout=0.5)
    yield provider
    provider.close()


ORDER = order_id_for(KEY)


def transaction(status_code: str, transaction_status: str, **extra: Any) -> dict[str, Any]:
    return {
        "status_code": status_code,
        "status_message": "Success, transaction is found",
        "transaction_id": "be4f3e44-d6ee-4355-8c64-c1d1dc7f4590",
        "order_id": ORDER,
        "merchant_id": "G141532850",
        "gross_amount": "150000.00",
        "currency": "IDR",
        "payment_type": "bank_transfer",
        "transaction_time": "2026-03-10 19:00:00",
        "transaction_status": transaction_status,
        "fraud_status": "accept",
        **extra,
    }


def test_midtrans_order_id_is_the_attempts_key_within_midtrans_rules() -> None:
    assert order_id_for(KEY) == ORDER and len(ORDER) <= 50
    assert ORDER.startswith("acme.INV-2026-000042.attempt-1-")
    assert order_id_for(attempt_idempotency_key("acme", "INV-2026-000042", 2)) != ORDER
    assert refund_key_for(KEY).replace("-", "").replace("_", "").isalnum()


def test_midtrans_bank_transfer_charge(httpserver: HTTPServer, midtrans: MidtransProvider) -> None:
    httpserver.expect_request(
        "/v2/charge",
        method="POST",
        headers={
            "Authorization": basic(MIDTRANS_KEY),
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        json={
            "payment_type": "bank_transfer",
            "bank_transfer": {"bank": "bca"},
            "transaction_details": {"order_id": ORDER, "gross_amount": 150000},
            "item_details": [{"id": "INV-2026-000042", "price": 150000, "quantity": 1, "name": "Usage March 2026"}],
            "custom_field1": "INV-2026-000042",
            "custom_field2": "sub-7",
        },
    ).respond_with_json(
        transaction("201", "pending", va_numbers=[{"bank": "bca", "va_number": "812785002530231"}]), status=201
    )

    answer = midtrans.charge(charge("bank_transfer:BCA"))

    httpserver.check_assertions()
    assert answer.reference == ORDER and answer.status is AttemptStatus.PROCESSING
    raw, _ = sent_json(httpserver)
    assert '"gross_amount": 150000}' in raw  # whole rupiah, a JSON integer


def test_midtrans_saved_card_captured_and_denied(httpserver: HTTPServer, midtrans: MidtransProvider) -> None:
    httpserver.expect_ordered_request("/v2/charge", method="POST").respond_with_json(
        transaction("200", "capture", payment_type="credit_card")
    )
    httpserver.expect_ordered_request("/v2/charge", method="POST").respond_with_json(
        transaction("202", "deny", payment_type="credit_card", status_message="Deny by Bank [CIMB] with code [05]")
    )
    assert midtrans.charge(charge("credit_card:481111-1114-a901971f")).status is AttemptStatus.SUCCEEDED
    _, body = sent_json(httpserver)
    assert body["credit_card"] == {"token_id": "481111-1114-a901971f"}
    denied = midtrans.charge(charge("credit_card:481111-1114-a901971f"))
    assert denied.status is AttemptStatus.FAILED
    assert denied.failure_reason == "Midtrans deny: Deny by Bank [CIMB] with code [05]"


def test_midtrans_duplicate_order_answers_with_the_existing_transaction(
    httpserver: HTTPServer, midtrans: MidtransProvider
) -> None:
    """A retry of one attempt reuses its order id; Midtrans refuses it (406) and the adapter reads
    what became of the first charge instead of charging again."""
    httpserver.expect_ordered_request("/v2/charge", method="POST").respond_with_json(
        {"status_code": "406", "status_message": "The request could not be completed due to a conflict"}, status=406
    )
    httpserver.expect_ordered_request(
        f"/v2/{ORDER}/status", method="GET", headers={"Authorization": basic(MIDTRANS_KEY)}
    ).respond_with_json(transaction("200", "settlement"))

    answer = midtrans.charge(charge("gopay"))

    httpserver.check_assertions()
    assert answer.status is AttemptStatus.SUCCEEDED and answer.reference == ORDER


def test_midtrans_snap_transaction(httpserver: HTTPServer, midtrans: MidtransProvider) -> None:
    httpserver.expect_request(
        "/snap/v1/transactions",
        method="POST",
        headers={"Authorization": basic(MIDTRANS_KEY)},
        json={
            "transaction_details": {"order_id": ORDER, "gross_amount": 150000},
            "item_details": [{"id": "INV-2026-000042", "price": 150000, "quantity": 1, "name": "Usage March 2026"}],
            "custom_field1": "INV-2026-000042",
            "custom_field2": "sub-7",
        },
    ).respond_with_json(
        {
            "token": "66e4fa55-fdac-4ef9-91b5-733b97d1b862",
            "redirect_url": "https://app.sandbox.midtrans.com/snap/v2/vtweb/66e4fa55-fdac-4ef9-91b5-733b97d1b862",
        },
        status=201,
    )

    answer = midtrans.charge(charge("snap"))

    httpserver.check_assertions()
    assert answer.status is AttemptStatus.PROCESSING and answer.reference == ORDER
    assert answer.action_url is not None and answer.action_url.endswith("733b97d1b862")


def test_midtrans_refund(httpserver: HTTPServer, midtrans: MidtransProvider) -> None:
    refund_key = f"{KEY}:refund-1"
    httpserver.expect_request(
        f"/v2/{ORDER}/refund",
        method="POST",
        headers={"Authorization": basic(MIDTRANS_KEY)},
        json={"refund_key": refund_key_for(refund_key), "amount": 50000, "reason": "customer asked"},
    ).respond_with_json(
        transaction(
            "200",
            "partial_refund",
            refund_chargeback_id=11,
            refund_amount="50000.00",
            refund_key=refund_key_for(refund_key),
        )
    )

    answer = midtrans.refund(RefundRequest(refund_key, ORDER, Money(50_000, "IDR"), "customer asked"))

    httpserver.check_assertions()
    assert answer.status is AttemptStatus.REFUNDED and answer.reference == "11"


@pytest.mark.parametrize("code", ["500", "503", "429"])
def test_midtrans_unknown_outcomes_raise_provider_unavailable(
    httpserver: HTTPServer, midtrans: MidtransProvider, code: str
) -> None:
    httpserver.expect_request("/v2/charge").respond_with_json({"status_code": code, "status_message": "x"})
    with pytest.raises(ProviderUnavailable):
        midtrans.charge(charge("qris"))


def test_midtrans_refused_key_raises_provider_unavailable(httpserver: HTTPServer, midtrans: MidtransProvider) -> None:
    httpserver.expect_request("/v2/charge").respond_with_json(
        {"status_code": "401", "status_message": "Access denied, please check client or server key"}, status=401
    )
    with pytest.raises(ProviderUnavailable, match="MIDTRANS_SERVER_KEY"):
        midtrans.charge(charge("qris"))


def test_midtrans_timeout_raises_provider_unavailable(httpserver: HTTPServer, midtrans: MidtransProvider) -> None:
    httpserver.expect_request("/v2/charge").respond_with_handler(slow)
    with pytest.raises(ProviderUnavailable, match="in time"):
        midtrans.charge(charge("gopay"))


def test_midtrans_unknown_method_token_is_refused_before_calling(
    httpserver: HTTPServer, midtrans: MidtransProvider
) -> None:
    with pytest.raises(InvalidValue, match="method_token"):
        midtrans.charge(charge("bank_transfer:unknownbank"))
    assert httpserver.log == []


def test_midtrans_environment_picks_the_documented_urls() -> None:
    production = MidtransProvider.from_env({"MIDTRANS_SERVER_KEY": "k", "MIDTRANS_ENVIRONMENT": "production"})
    assert production is not None and "api.midtrans.com" in repr(production._core)
    assert MidtransProvider.from_env({}) is None
    with pytest.raises(InvalidValue, match="MIDTRANS_ENVIRONMENT"):
        MidtransProvider.from_env({"MIDTRANS_SERVER_KEY": "k", "MIDTRANS_ENVIRONMENT": "live"})


def test_xendit_retry_prefers_the_paid_invoice_and_creates_when_none_is_found(
    httpserver: HTTPServer, xendit: XenditProvider
) -> None:
    expired, paid = {**INVOICE, "id": "old", "status": "EXPIRED"}, {**INVOICE, "id": "paid", "status": "PAID"}
    httpserver.expect_ordered_request("/v2/invoices", method="GET").respond_with_json([expired, paid])
    httpserver.expect_ordered_request("/v2/invoices", method="GET").respond_with_json(
        {"error_code": "INVOICE_NOT_FOUND_ERROR", "message": "Could not find invoice"}, status=404
    )
    httpserver.expect_ordered_request("/v2/invoices", method="POST").respond_with_json(INVOICE)
    assert xendit.charge(charge("ANY")).reference == "paid"
    assert xendit.charge(charge("ANY")).reference == INVOICE["id"]
    httpserver.check_assertions()


def test_xendit_conflict_on_the_key_answers_with_its_invoice(httpserver: HTTPServer, xendit: XenditProvider) -> None:
    """Another call with the same key got there first: Xendit's 409 is not a failed charge."""
    httpserver.expect_ordered_request("/v2/invoices", method="GET").respond_with_json([])
    httpserver.expect_ordered_request("/v2/invoices", method="POST").respond_with_json(
        {"error_code": "DUPLICATE_ERROR", "message": "idempotency key already used"}, status=409
    )
    httpserver.expect_ordered_request("/v2/invoices", method="GET").respond_with_json([INVOICE])
    answer = xendit.charge(charge("ANY"))
    httpserver.check_assertions()
    assert answer.status is AttemptStatus.PROCESSING and answer.reference == INVOICE["id"]


def test_midtrans_snap_retry_reads_the_order_it_opened(httpserver: HTTPServer, midtrans: MidtransProvider) -> None:
    httpserver.expect_ordered_request("/snap/v1/transactions", method="POST").respond_with_json(
        {"error_messages": ["transaction_details.order_id has already been taken"]}, status=400
    )
    httpserver.expect_ordered_request(f"/v2/{ORDER}/status", method="GET").respond_with_json(
        {"status_code": "404", "status_message": "Transaction doesn't exist."}, status=404
    )
    answer = midtrans.charge(charge("snap"))
    httpserver.check_assertions()
    assert answer.status is AttemptStatus.PROCESSING and answer.reference == ORDER
