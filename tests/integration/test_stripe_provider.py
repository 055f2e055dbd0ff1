"""The Stripe provider through the official library against stripe-mock, which checks every request
against Stripe's OpenAPI spec: a charge is a confirmed off-session PaymentIntent carrying the
attempt's idempotency key (as Stripe's Idempotency-Key header, and in its metadata so webhooks
find the attempt), amounts in Stripe's units (IDR in hundredths), answers mapped to attempt
statuses; a refund is a Refund of the intent; an unreachable Stripe is ProviderUnavailable."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import stripe

from billing.payments.providers.stripe import StripeProvider
from invoicing.engine.payments import AttemptStatus, ChargeRequest, RefundRequest
from invoicing.ports import ProviderUnavailable
from rating.money import Money
from tests.stripe_fixtures import stripe_mock as stripe_mock

pytestmark = pytest.mark.integration


class RecordingSession(requests.Session):
    """A requests session that keeps each request the library sends (method, URL, headers, body)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        return super().send(request, **kwargs)


def provider(base: str, session: requests.Session | None = None) -> StripeProvider:
    env = {"STRIPE_API_KEY": "sk_test_123", "STRIPE_API_BASE": base}
    client = stripe.RequestsClient(session=session) if session is not None else None
    return StripeProvider.from_environment(env, **({"http_client": client} if client else {}))


def charge_request(amount: Money) -> ChargeRequest:
    return ChargeRequest("t1:INV-2026-000001:attempt-1", amount, "pm_card_visa", "sub_1", "INV-2026-000001", "Invoice")


def test_a_charge_is_a_confirmed_payment_intent_carrying_the_attempt_key(stripe_mock: str) -> None:
    session = RecordingSession()
    answer = provider(stripe_mock, session).charge(charge_request(Money(15000, "IDR")))
    (sent,) = session.sent
    assert (sent.method, sent.url) == ("POST", f"{stripe_mock}/v1/payment_intents")
    assert sent.headers["Idempotency-Key"] == "t1:INV-2026-000001:attempt-1"
    assert sent.headers["Authorization"] == "Bearer sk_test_123"
    body = dict(parse_qsl(str(sent.body)))
    assert (body["amount"], body["currency"], body["payment_method"], body["confirm"], body["off_session"]) == (
        "1500000",  # IDR 15000: Stripe counts rupiah in hundredths
        "idr",
        "pm_card_visa",
        "true",
        "true",
    )
    assert body["metadata[idempotency_key]"] == "t1:INV-2026-000001:attempt-1"
    assert body["metadata[invoice_number]"] == "INV-2026-000001"
    # stripe-mock answers its fixture intent, status requires_payment_method: Stripe's word for a
    # confirmation that did not go through, i.e. this method failed
    assert answer.reference.startswith("pi_")
    assert (answer.status, answer.failure_reason) == (AttemptStatus.FAILED, "payment intent requires_payment_method")


def test_a_refund_is_a_refund_of_the_intent(stripe_mock: str) -> None:
    session = RecordingSession()
    request = RefundRequest("t1:INV-2026-000001:attempt-1:refund", "pi_123", Money(1110, "USD"), "asked")
    answer = provider(stripe_mock, session).refund(request)
    (sent,) = session.sent
    assert (sent.url, sent.headers["Idempotency-Key"]) == (f"{stripe_mock}/v1/refunds", request.idempotency_key)
    body = dict(parse_qsl(str(sent.body)))
    assert (body["payment_intent"], body["amount"]) == ("pi_123", "1110")
    assert answer.status is AttemptStatus.REFUNDED and answer.reference.startswith("re_")


def test_an_unreachable_stripe_is_unavailable_not_failed() -> None:
    with pytest.raises(ProviderUnavailable, match="APIConnectionError"):
        provider("http://127.0.0.1:9").charge(charge_request(Money(1110, "USD")))
