"""The Stripe webhook verifier (billing/payments/providers/stripe.py) on Stripe's documented scheme:
a body signed with the endpoint secret at a timestamp within the tolerance is read into its
PaymentEvent; unsigned, badly signed, tampered, stale or unknown events are refused with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from billing.clock import TestClock
from billing.payments.providers.stripe import (
    StripeWebhookVerifier,
    from_stripe_amount,
    stripe_signature,
    to_stripe_amount,
)
from invoicing.engine.payments import AttemptStatus, PaymentEvent, ProviderName
from invoicing.ports import WebhookRejected
from rating.money import Money

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
SECRET = "whsec_test_secret"


def body(kind: str = "payment_intent.succeeded", **fields: object) -> bytes:
    intent = {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 1500000,
        "currency": "idr",
        "metadata": {"idempotency_key": "t1:INV-2026-000001:attempt-1"},
        **fields,
    }
    return json.dumps({"id": "evt_1", "type": kind, "data": {"object": intent}}).encode()


def signed(payload: bytes, at: datetime = NOW, secret: str = SECRET) -> dict[str, str]:
    t = int(at.timestamp())
    return {"stripe-signature": f"t={t},v1={stripe_signature(secret, t, payload)},v0=ignored"}


def verifier() -> StripeWebhookVerifier:
    return StripeWebhookVerifier(SECRET, TestClock(NOW).now)


def test_a_signed_success_is_read_into_its_event() -> None:
    payload = body()
    assert verifier().verify(signed(payload), payload) == PaymentEvent(
        ProviderName.STRIPE,
        "evt_1",
        AttemptStatus.SUCCEEDED,
        charge_reference="pi_1",
        idempotency_key="t1:INV-2026-000001:attempt-1",
        amount=Money(15000, "IDR"),
    )


def test_a_failure_and_a_refund_are_read_too() -> None:
    failed = body("payment_intent.payment_failed", last_payment_error={"code": "card_declined"})
    event = verifier().verify(signed(failed), failed)
    assert (event.status, event.failure_reason) == (AttemptStatus.FAILED, "card_declined")
    refund = json.dumps(
        {"id": "evt_2", "type": "charge.refunded", "data": {"object": {"id": "ch_1", "payment_intent": "pi_1"}}}
    ).encode()
    event = verifier().verify(signed(refund), refund)
    assert (event.status, event.charge_reference) == (AttemptStatus.REFUNDED, "pi_1")


@pytest.mark.parametrize(
    ("headers", "payload", "reason"),
    [
        ({}, body(), "no Stripe-Signature header"),
        ({"stripe-signature": "t=1,v0=abc"}, body(), "no timestamp or no v1"),
        (signed(body(), secret="whsec_other"), body(), "does not match"),
        (signed(body()), body(amount=1), "does not match"),  # tampered after signing
        (signed(body(), at=NOW - timedelta(seconds=301)), body(), "more than 300 s away"),
        (signed(body(), at=NOW + timedelta(seconds=301)), body(), "more than 300 s away"),
        (signed(body("customer.created")), body("customer.created"), "is not one settled here"),
        (signed(b"not json"), b"not json", "not a Stripe event"),
    ],
)
def test_anything_unsigned_stale_or_unknown_is_refused(headers: dict[str, str], payload: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        verifier().verify(headers, payload)


def test_a_signature_within_the_tolerance_passes() -> None:
    payload = body()
    assert verifier().verify(signed(payload, at=NOW - timedelta(seconds=299)), payload).event_id == "evt_1"


@pytest.mark.parametrize(
    ("money", "stripe_amount"),
    [(Money(15000, "IDR"), 1500000), (Money(1110, "USD"), 1110), (Money(500, "JPY"), 500), (Money(1500, "KWD"), 1500)],
)
def test_amounts_convert_to_stripe_units_and_back(money: Money, stripe_amount: int) -> None:
    assert to_stripe_amount(money) == stripe_amount
    assert from_stripe_amount(stripe_amount, money.currency.lower()) == money
