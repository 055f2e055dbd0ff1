"""The Xendit and Midtrans webhook verifiers: what a genuine notification settles (status, charge
reference, amount in exact minor units, the event id that makes redelivery harmless), what carries
no outcome, and every way an unsigned, badly signed or unreadable one is refused."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.payments.providers.midtrans import MidtransWebhookVerifier, order_id_for
from billing.payments.providers.xendit import XenditWebhookVerifier
from invoicing.engine.payments import AttemptStatus, ProviderName
from invoicing.ports import WebhookIgnored, WebhookMalformed, WebhookRejected
from rating.money import Money

pytestmark = pytest.mark.unit

TOKEN = "xendit-callback-token-for-tests"
SERVER_KEY = "SB-Mid-server-key-for-tests"


def xendit_invoice(status: str = "PAID", **extra: Any) -> bytes:
    return json.dumps(
        {
            "id": "593f4ed1c3d3bb7f39733d83",
            "external_id": "acme:INV-2026-000042:attempt-1",
            "user_id": "5781d19b2e2385880609791c",
            "status": status,
            "merchant_name": "Acme",
            "amount": 150000,
            "paid_amount": 150000,
            "currency": "IDR",
            "paid_at": "2026-03-10T12:00:00.000Z",
            "payment_method": "BANK_TRANSFER",
            "payment_channel": "BCA",
            **extra,
        }
    ).encode()


def test_xendit_paid_invoice_succeeds_with_the_paid_amount() -> None:
    event = XenditWebhookVerifier(TOKEN).verify({"x-callback-token": TOKEN}, xendit_invoice())
    assert event.provider is ProviderName.XENDIT
    assert event.status is AttemptStatus.SUCCEEDED
    assert event.charge_reference == "593f4ed1c3d3bb7f39733d83"
    assert event.idempotency_key == "acme:INV-2026-000042:attempt-1"
    assert event.amount == Money(150_000, "IDR")
    assert event.event_id == "593f4ed1c3d3bb7f39733d83:PAID"


def test_xendit_event_id_is_the_webhook_id_header_when_sent() -> None:
    headers = {"x-callback-token": TOKEN, "webhook-id": "whk_01HQ"}
    assert XenditWebhookVerifier(TOKEN).verify(headers, xendit_invoice()).event_id == "whk_01HQ"


def test_xendit_expired_invoice_fails_and_pending_is_ignored() -> None:
    verifier = XenditWebhookVerifier(TOKEN)
    expired = verifier.verify({"x-callback-token": TOKEN}, xendit_invoice("EXPIRED"))
    assert expired.status is AttemptStatus.FAILED and expired.amount is None
    with pytest.raises(WebhookIgnored):
        verifier.verify({"x-callback-token": TOKEN}, xendit_invoice("PENDING"))


def test_xendit_refund_events() -> None:
    verifier = XenditWebhookVerifier(TOKEN)

    def refund(status: str) -> bytes:
        data = {"id": "rfd-1", "invoice_id": "inv-1", "amount": 50000, "currency": "IDR", "status": status}
        return json.dumps({"event": f"refund.{status.lower()}", "business_id": "b", "data": data}).encode()

    refunded = verifier.verify({"x-callback-token": TOKEN}, refund("SUCCEEDED"))
    assert refunded.status is AttemptStatus.REFUNDED and refunded.charge_reference == "inv-1"
    assert refunded.amount == Money(50_000, "IDR") and refunded.event_id == "rfd-1:SUCCEEDED"
    with pytest.raises(WebhookIgnored):  # a failed refund leaves the paid charge paid
        verifier.verify({"x-callback-token": TOKEN}, refund("FAILED"))


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no x-callback-token header"),
        ({"x-callback-token": ""}, "does not match"),
        ({"x-callback-token": TOKEN + "x"}, "does not match"),
        ({"x-callback-token": TOKEN.upper()}, "does not match"),
    ],
)
def test_xendit_refuses_a_missing_or_wrong_token(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason) as refused:
        XenditWebhookVerifier(TOKEN).verify(headers, xendit_invoice())
    assert not isinstance(refused.value, WebhookMalformed)
    assert TOKEN not in refused.value.reason


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", json.dumps({"status": "PAID"}).encode(), xendit_invoice(paid_amount="1.5")],
)
def test_xendit_refuses_an_unreadable_body(body: bytes) -> None:
    with pytest.raises(WebhookMalformed):
        XenditWebhookVerifier(TOKEN).verify({"x-callback-token": TOKEN}, body)


def midtrans_notification(
    transaction_status: str = "settlement", status_code: str = "200", key: str = SERVER_KEY, **extra: Any
) -> dict[str, Any]:
    order_id, gross = order_id_for("acme:INV-2026-000042:attempt-1"), "150000.00"
    return {
        "transaction_time": "2026-03-10 19:00:00",
        "transaction_status": transaction_status,
        "transaction_id": "513f1f01-c9da-474c-9fc9-d5c64364b709",
        "status_message": "midtrans payment notification",
        "status_code": status_code,
        "signature_key": hashlib.sha512(f"{order_id}{status_code}{gross}{key}".encode()).hexdigest(),
        "payment_type": "bank_transfer",
        "order_id": order_id,
        "merchant_id": "G141532850",
        "gross_amount": gross,
        "fraud_status": "accept",
        "currency": "IDR",
        **extra,
    }


def verify_midtrans(payload: dict[str, Any]) -> Any:
    return MidtransWebhookVerifier(SERVER_KEY).verify({}, json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("transaction_status", "status_code", "expected"),
    [
        ("settlement", "200", AttemptStatus.SUCCEEDED),
        ("capture", "200", AttemptStatus.SUCCEEDED),
        ("deny", "202", AttemptStatus.FAILED),
        ("cancel", "200", AttemptStatus.FAILED),
        ("expire", "407", AttemptStatus.FAILED),
        ("failure", "202", AttemptStatus.FAILED),
    ],
)
def test_midtrans_status_mapping(transaction_status: str, status_code: str, expected: AttemptStatus) -> None:
    event = verify_midtrans(midtrans_notification(transaction_status, status_code))
    assert event.status is expected
    assert event.charge_reference == order_id_for("acme:INV-2026-000042:attempt-1")
    assert event.event_id == f"513f1f01-c9da-474c-9fc9-d5c64364b709:{transaction_status}"
    assert event.amount == Money(150_000, "IDR")


@pytest.mark.parametrize(
    "payload",
    [
        midtrans_notification("pending", "201"),
        midtrans_notification("authorize", "200"),
        midtrans_notification("capture", "200", fraud_status="challenge"),
    ],
)
def test_midtrans_notifications_without_an_outcome_are_ignored(payload: dict[str, Any]) -> None:
    with pytest.raises(WebhookIgnored):
        verify_midtrans(payload)


def test_midtrans_refunds_each_have_their_own_event() -> None:
    def refunded(key: str, amount: str) -> Any:
        refund = {"refund_chargeback_id": 1, "refund_amount": amount, "refund_key": key, "reason": "x"}
        return verify_midtrans(midtrans_notification("partial_refund", "200", refunds=[refund]))

    first, second = refunded("r1", "50000.00"), refunded("r2", "25000.00")
    assert first.status is AttemptStatus.REFUNDED and first.amount == Money(50_000, "IDR")
    assert first.event_id != second.event_id and second.amount == Money(25_000, "IDR")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"gross_amount": "1.00"}, "does not match"),  # tampered amount
        ({"status_code": "201"}, "does not match"),
        ({"order_id": "someone-else"}, "does not match"),
        ({"signature_key": "0" * 128}, "does not match"),
        ({"signature_key": ""}, "no signature_key"),
        ({"signature_key": None}, "no signature_key"),
    ],
)
def test_midtrans_refuses_a_missing_or_wrong_signature(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason) as refused:
        verify_midtrans({**midtrans_notification(), **change})
    assert not isinstance(refused.value, WebhookMalformed)


def test_midtrans_refuses_a_notification_signed_with_another_key() -> None:
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_midtrans(midtrans_notification(key="SB-Mid-server-someone-else"))


def test_midtrans_refuses_an_unreadable_body() -> None:
    verifier = MidtransWebhookVerifier(SERVER_KEY)
    for body in (b"", b"{", b'"text"'):
        with pytest.raises(WebhookMalformed):
            verifier.verify({}, body)
    without_order = {k: v for k, v in midtrans_notification().items() if k != "order_id"}
    with pytest.raises(WebhookMalformed, match="order_id"):
        verify_midtrans(without_order)


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_midtrans_order_ids_are_valid_and_distinct(first: str, second: str) -> None:
    for key in (first, second):
        order = order_id_for(key)
        assert len(order) <= 50 and all(c.isascii() and (c.isalnum() or c in "-_~.") for c in order)
        assert order == order_id_for(key)
    assert (order_id_for(first) == order_id_for(second)) == (first == second)
