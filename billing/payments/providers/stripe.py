"""Stripe through its official Python library: a charge is a confirmed off-session PaymentIntent on
the method's ``pm_…`` token, a refund a Refund of it, each request carrying the attempt's
idempotency key (Stripe's ``Idempotency-Key``), so a repeated call answers the first one's result.
Tests run it against stripe-mock (ops/stripe_mock.py). ``StripeWebhookVerifier`` checks the
``Stripe-Signature`` header as Stripe documents it: HMAC-SHA256 of ``"{t}.{body}"`` with the
endpoint's secret, any ``v1`` signature matching, ``t`` within the tolerance of our clock.

Secrets: ``STRIPE_API_KEY`` and ``STRIPE_WEBHOOK_SECRET`` (or ``…_FILE``); ``STRIPE_API_BASE``
points the client elsewhere (stripe-mock). Amounts: Stripe counts most currencies in hundredths,
IDR included, a few in whole units and five in thousandths; our minor units follow ISO 4217
(IDR whole rupiah), so amounts are converted at this edge."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

import stripe

from billing.payments.secrets import provider_secret
from invoicing.engine.payments import (
    AttemptStatus,
    ChargeRequest,
    PaymentEvent,
    ProviderCharge,
    ProviderName,
    ProviderRefund,
    RefundRequest,
)
from invoicing.ports import ProviderUnavailable, WebhookRejected
from rating.errors import InvalidValue
from rating.money import Money, currency_exponent

ZERO_DECIMAL: Final = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)  # Stripe's zero-decimal currencies
THREE_DECIMAL: Final = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
TOLERANCE_SECONDS: Final = 300  # Stripe's libraries' default


def _stripe_exponent(currency: str) -> int:
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


def to_stripe_amount(money: Money) -> int:
    """``money`` in Stripe's unit of its currency (IDR 15000 → 1500000)."""
    shift = _stripe_exponent(money.currency) - currency_exponent(money.currency)
    scale: int = 10 ** abs(shift)
    if shift < 0:
        if money.amount % scale:
            raise InvalidValue("amount", f"{money} cannot be charged through Stripe in whole {money.currency} units")
        return money.amount // scale
    return money.amount * scale


def from_stripe_amount(amount: int, currency: str) -> Money:
    """Stripe's amount back to minor units (refused when it does not fit them)."""
    code = currency.upper()
    shift = _stripe_exponent(code) - currency_exponent(code)
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        if amount % scale:
            raise InvalidValue("amount", f"{amount} is not a whole number of {code} minor units")
        return Money(amount // scale, code)
    return Money(amount * scale, code)


def charge_status(intent_status: str) -> AttemptStatus:
    """A confirmed PaymentIntent's status as an attempt's: succeeded, still on its way (processing,
    or waiting for the customer's action), or failed (it wants another method, or was canceled)."""
    if intent_status == "succeeded":
        return AttemptStatus.SUCCEEDED
    if intent_status in ("processing", "requires_action", "requires_confirmation", "requires_capture"):
        return AttemptStatus.PROCESSING
    return AttemptStatus.FAILED


class StripeProvider:
    """The Stripe adapter; ``client`` is a ``stripe.StripeClient`` (see :func:`from_environment`)."""

    name = ProviderName.STRIPE

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **options: Any) -> StripeProvider:
        key = provider_secret("STRIPE_API_KEY", environ)
        if key is None:
            raise InvalidValue("STRIPE_API_KEY", "is not set (nor STRIPE_API_KEY_FILE): Stripe cannot be called")
        base = (os.environ if environ is None else environ).get("STRIPE_API_BASE")
        addresses: Any = {"api": base} if base else None
        return cls(stripe.StripeClient(key, base_addresses=addresses, max_network_retries=0, **options))

    def charge(self, request: ChargeRequest) -> ProviderCharge:
        params: Any = {
            "amount": to_stripe_amount(request.amount),
            "currency": request.amount.currency.lower(),
            "payment_method": request.method_token,
            "confirm": True,
            "off_session": True,
            "description": request.description,
            "metadata": {
                "invoice_number": request.invoice_number,
                "customer_reference": request.customer_reference,
                "idempotency_key": request.idempotency_key,
            },
        }
        try:
            intent = self.client.v1.payment_intents.create(params, {"idempotency_key": request.idempotency_key})
        except stripe.CardError as error:
            reference = ""
            intent_error = getattr(error.error, "payment_intent", None) if error.error else None
            if intent_error is not None:
                reference = str(intent_error.get("id", ""))
            return ProviderCharge(reference, AttemptStatus.FAILED, error.code or "card_declined")
        except (stripe.APIConnectionError, stripe.RateLimitError) as error:
            raise ProviderUnavailable(f"Stripe: {type(error).__name__}") from None
        except stripe.APIError as error:  # Stripe's 5xx: the outcome is unknown
            raise ProviderUnavailable(f"Stripe: {type(error).__name__} {error.http_status}") from None
        except stripe.StripeError as error:  # refused (a bad token, an unsupported currency): no charge made
            return ProviderCharge("", AttemptStatus.FAILED, error.code or type(error).__name__)
        status = charge_status(intent.status)
        failure = None if status is not AttemptStatus.FAILED else f"payment intent {intent.status}"
        return ProviderCharge(intent.id, status, failure)

    def refund(self, request: RefundRequest) -> ProviderRefund:
        params: Any = {
            "payment_intent": request.charge_reference,
            "amount": to_stripe_amount(request.amount),
            "metadata": {"reason": request.reason[:500], "idempotency_key": request.idempotency_key},
        }
        try:
            refund = self.client.v1.refunds.create(params, {"idempotency_key": request.idempotency_key})
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as error:
            raise ProviderUnavailable(f"Stripe: {type(error).__name__}") from None
        except stripe.InvalidRequestError as error:
            return ProviderRefund("", AttemptStatus.FAILED, error.user_message or str(error.code))
        if refund.status == "succeeded":
            return ProviderRefund(refund.id, AttemptStatus.REFUNDED)
        if refund.status in ("pending", "requires_action"):
            return ProviderRefund(refund.id, AttemptStatus.PROCESSING)
        return ProviderRefund(refund.id, AttemptStatus.FAILED, refund.failure_reason or refund.status)


EVENT_STATUS: Final = {
    "payment_intent.succeeded": AttemptStatus.SUCCEEDED,
    "payment_intent.payment_failed": AttemptStatus.FAILED,
    "charge.refunded": AttemptStatus.REFUNDED,
}


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature Stripe sends for ``body`` at ``timestamp`` (Unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class StripeWebhookVerifier:
    """A WebhookVerifier for Stripe; ``now`` is the service's clock."""

    provider = ProviderName.STRIPE

    def __init__(self, secret: str, now: Callable[[], datetime], tolerance: int = TOLERANCE_SECONDS) -> None:
        if not secret:
            raise InvalidValue("STRIPE_WEBHOOK_SECRET", "is empty")
        self.secret = secret
        self.now = now
        self.tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        header = headers.get("stripe-signature")
        if not header:
            raise WebhookRejected("no Stripe-Signature header")
        timestamp: int | None = None
        signatures: list[str] = []
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name == "t" and value.isdigit() and len(value) <= 12:
                timestamp = int(value)
            elif name == "v1":
                signatures.append(value)
        if timestamp is None or not signatures:
            raise WebhookRejected("Stripe-Signature has no timestamp or no v1 signature")
        expected = stripe_signature(self.secret, timestamp, body)
        if not any(hmac.compare_digest(expected, s) for s in signatures):
            raise WebhookRejected("Stripe-Signature does not match the body")
        if abs(self.now().timestamp() - timestamp) > self.tolerance:
            raise WebhookRejected(f"Stripe-Signature timestamp is more than {self.tolerance} s away")
        return read_event(body)


def read_event(body: bytes) -> PaymentEvent:
    """The PaymentEvent of a verified Stripe event (payment_intent.succeeded / payment_failed,
    charge.refunded); other types are refused, so they are acknowledged and not settled."""
    try:
        event = json.loads(body)
        kind, event_id, data = event["type"], event["id"], event["data"]["object"]
    except (ValueError, KeyError, TypeError):
        raise WebhookRejected("the body is not a Stripe event") from None
    status = EVENT_STATUS.get(kind)
    if status is None:
        raise WebhookRejected(f"event type {kind!r} is not one settled here")
    try:
        metadata = data.get("metadata") or {}
        reference = data["payment_intent"] if kind == "charge.refunded" else data["id"]
        amount = from_stripe_amount(int(data["amount"]), str(data["currency"])) if "amount" in data else None
        failure = None
        if status is AttemptStatus.FAILED:
            failure = ((data.get("last_payment_error") or {}).get("code")) or "payment_failed"
        return PaymentEvent(
            ProviderName.STRIPE,
            str(event_id),
            status,
            charge_reference=str(reference),
            idempotency_key=metadata.get("idempotency_key"),
            amount=amount,
            failure_reason=failure,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise WebhookRejected(f"the Stripe event {event_id!r} is malformed: {error}") from None
