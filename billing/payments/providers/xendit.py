"""Xendit (developers.xendit.co): a charge is a Xendit invoice (``POST /v2/invoices``), a hosted
page where the customer pays by virtual account, e-wallet, QRIS, card or retail outlet, whose
outcome arrives by callback; a refund is ``POST /refunds`` on that invoice. Both authenticate with
HTTP Basic, the secret key as the user and an empty password.

Idempotency: the attempt's idempotency key is the invoice's ``external_id`` and travels in the
``X-IDEMPOTENCY-KEY`` header. Xendit does not refuse a second invoice of one external_id, so a
charge first looks the external_id up (``GET /v2/invoices?external_id=``) and answers with the
invoice found: a retry after a timeout or a crash never opens a second invoice to pay. Refunds carry
the refund's key as ``reference_id`` and in the ``idempotency-key`` header of the refunds API.

The method token names the invoice's ``payment_methods`` (``BCA,BNI,OVO``…), or ``ANY`` (or
nothing) for every method the account has. Amounts are IDR in whole rupiah.

Callbacks carry the ``x-callback-token`` header, the account's callback verification token; the
verifier compares it in constant time. Event ids: the ``webhook-id`` header when Xendit sends one
(the same on every redelivery of one event), else ``{invoice or refund id}:{status}`` (a status
is reached once, so that is one event too)."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from billing.payments.providers.http import DEFAULT_TIMEOUT_SECONDS, RestClient, money_from_provider, whole_units
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
from invoicing.ports import ProviderUnavailable, WebhookIgnored, WebhookMalformed, WebhookRejected
from rating.errors import InvalidValue

BASE_URL = "https://api.xendit.co"
CURRENCIES = frozenset({"IDR"})
ANY_METHOD = "ANY"
REFUND_REASONS = frozenset({"FRAUDULENT", "DUPLICATE", "REQUESTED_BY_CUSTOMER", "CANCELLATION", "OTHERS"})

# Invoice statuses (PENDING, PAID, SETTLED, EXPIRED) and refund statuses as attempt statuses.
INVOICE_STATUS = {
    "PENDING": AttemptStatus.PROCESSING,
    "PAID": AttemptStatus.SUCCEEDED,
    "SETTLED": AttemptStatus.SUCCEEDED,
    "EXPIRED": AttemptStatus.FAILED,
}
REFUND_STATUS = {
    "PENDING": AttemptStatus.PROCESSING,
    "SUCCEEDED": AttemptStatus.REFUNDED,
    "FAILED": AttemptStatus.FAILED,
    "CANCELLED": AttemptStatus.FAILED,
}


class XenditProvider:
    """The PaymentProvider over Xendit's invoices and refunds APIs."""

    name = ProviderName.XENDIT

    def __init__(self, secret_key: str, base_url: str = BASE_URL, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._api = RestClient("Xendit", base_url, secret_key, timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> XenditProvider | None:
        """``XENDIT_SECRET_KEY`` (or ``_FILE``) and ``XENDIT_BASE_URL``; None when no key is set."""
        secret = provider_secret("XENDIT_SECRET_KEY", environ)
        if secret is None:
            return None
        base = (os.environ if environ is None else environ).get("XENDIT_BASE_URL") or BASE_URL
        return cls(secret, base)

    def charge(self, request: ChargeRequest) -> ProviderCharge:
        amount = whole_units(request.amount, "Xendit", CURRENCIES)
        found = self._find(request.idempotency_key)
        if found is not None:
            return found
        body: dict[str, Any] = {
            "external_id": request.idempotency_key,
            "amount": amount,
            "currency": request.amount.currency,
            "description": request.description or f"Invoice {request.invoice_number}",
        }
        methods = [m.strip() for m in request.method_token.split(",") if m.strip()]
        if methods and methods != [ANY_METHOD]:
            body["payment_methods"] = methods
        answer = self._api.request("POST", "/v2/invoices", body, headers={"X-IDEMPOTENCY-KEY": request.idempotency_key})
        if answer.status in (200, 201):
            return _invoice_charge(answer.body)
        if answer.status == 409:  # the key was used (a concurrent or earlier call): its invoice is the answer
            found = self._find(request.idempotency_key)
            if found is None:
                raise ProviderUnavailable("Xendit answered 409 to the key, and has no invoice of it yet")
            return found
        _refuse_credentials(answer.status)
        return ProviderCharge(
            reference="", status=AttemptStatus.FAILED, failure_reason=_error(answer.body, answer.status)
        )

    def _find(self, external_id: str) -> ProviderCharge | None:
        """The invoice opened before under this external id, if any."""
        found = self._api.request("GET", "/v2/invoices", params={"external_id": external_id})
        if found.status == 200 and isinstance(found.body, list) and found.body:
            return _invoice_charge(_furthest(found.body))
        return None

    def refund(self, request: RefundRequest) -> ProviderRefund:
        amount = whole_units(request.amount, "Xendit", CURRENCIES)
        reason = request.reason.strip().upper()
        body: dict[str, Any] = {
            "invoice_id": request.charge_reference,
            "reference_id": request.idempotency_key,
            "amount": amount,
            "currency": request.amount.currency,
            "reason": reason if reason in REFUND_REASONS else "OTHERS",
        }
        if reason not in REFUND_REASONS and request.reason:
            body["metadata"] = {"reason": request.reason[:500]}
        answer = self._api.request("POST", "/refunds", body, headers={"idempotency-key": request.idempotency_key})
        if answer.status in (200, 201) and isinstance(answer.body, dict):
            status = REFUND_STATUS.get(str(answer.body.get("status")))
            if status is None or not answer.body.get("id"):
                raise ProviderUnavailable(
                    f"Xendit answered a refund without a known status: {answer.body.get('status')!r}"
                )
            reason_text = answer.body.get("failure_code") if status is AttemptStatus.FAILED else None
            return ProviderRefund(str(answer.body["id"]), status, None if reason_text is None else str(reason_text))
        _refuse_credentials(answer.status)
        return ProviderRefund(
            reference="", status=AttemptStatus.FAILED, failure_reason=_error(answer.body, answer.status)
        )

    def close(self) -> None:
        self._api.close()


def _invoice_charge(invoice: Any) -> ProviderCharge:
    if not isinstance(invoice, dict) or not invoice.get("id"):
        raise ProviderUnavailable("Xendit answered an invoice without an id")
    status = INVOICE_STATUS.get(str(invoice.get("status")))
    if status is None:
        raise ProviderUnavailable(f"Xendit answered an invoice of unknown status {invoice.get('status')!r}")
    return ProviderCharge(
        reference=str(invoice["id"]),
        status=status,
        failure_reason="the Xendit invoice expired unpaid" if status is AttemptStatus.FAILED else None,
        action_url=str(invoice["invoice_url"]) if invoice.get("invoice_url") else None,
    )


def _furthest(invoices: list[Any]) -> Any:
    """Of the invoices of one external id, the one that got furthest: paid, else open, else expired."""

    def rank(invoice: Any) -> int:
        status = INVOICE_STATUS.get(str(invoice.get("status"))) if isinstance(invoice, dict) else None
        order = (AttemptStatus.SUCCEEDED, AttemptStatus.PROCESSING, AttemptStatus.FAILED)
        return order.index(status) if status in order else len(order)

    return min(invoices, key=rank)


def _refuse_credentials(status: int) -> None:
    """A refused key charged nothing, and the attempt must not burn a dunning retry on our setup:
    the same call is retried, with the same key, once the secret is right."""
    if status in (401, 403):
        raise ProviderUnavailable(f"Xendit refused the credentials ({status}): check XENDIT_SECRET_KEY")


def _error(body: Any, status: int) -> str:
    if isinstance(body, dict):
        code, message = body.get("error_code"), body.get("message")
        if code or message:
            return f"Xendit {status} {code or ''}: {message or ''}".strip()
    return f"Xendit answered {status}"


class XenditWebhookVerifier:
    """Xendit callbacks: the ``x-callback-token`` header must equal the account's token."""

    provider = ProviderName.XENDIT

    def __init__(self, callback_token: str) -> None:
        if not callback_token:
            raise InvalidValue("XENDIT_CALLBACK_TOKEN", "is empty")
        self._token = callback_token.encode()

    def __repr__(self) -> str:
        return "XenditWebhookVerifier()"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> XenditWebhookVerifier | None:
        token = provider_secret("XENDIT_CALLBACK_TOKEN", environ)
        return None if token is None else cls(token)

    def verify(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        token = headers.get("x-callback-token")
        if token is None:
            raise WebhookRejected("no x-callback-token header")
        if not hmac.compare_digest(token.encode(), self._token):
            raise WebhookRejected("x-callback-token does not match XENDIT_CALLBACK_TOKEN")
        try:
            payload = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise WebhookMalformed("the body is not JSON") from None
        if not isinstance(payload, dict):
            raise WebhookMalformed("the body is not a JSON object")
        if str(payload.get("event", "")).startswith("refund."):
            return _refund_event(headers, payload)
        return _invoice_event(headers, payload)


def _field(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise WebhookMalformed(f"no {name}")
    return value


def _invoice_event(headers: Mapping[str, str], invoice: Mapping[str, Any]) -> PaymentEvent:
    invoice_id, status_text = _field(invoice, "id"), _field(invoice, "status")
    status = INVOICE_STATUS.get(status_text)
    if status is None or status is AttemptStatus.PROCESSING:
        raise WebhookIgnored(f"invoice status {status_text} carries no outcome")
    currency = str(invoice.get("currency") or "IDR")
    paid = invoice.get("paid_amount", invoice.get("amount"))
    try:
        amount = money_from_provider(paid, currency, "paid_amount") if status is AttemptStatus.SUCCEEDED else None
    except InvalidValue as error:
        raise WebhookMalformed(str(error)) from None
    return PaymentEvent(
        provider=ProviderName.XENDIT,
        event_id=headers.get("webhook-id") or f"{invoice_id}:{status_text}",
        status=status,
        charge_reference=invoice_id,
        idempotency_key=_field(invoice, "external_id"),
        amount=amount,
        failure_reason="the Xendit invoice expired unpaid" if status is AttemptStatus.FAILED else None,
    )


def _refund_event(headers: Mapping[str, str], payload: Mapping[str, Any]) -> PaymentEvent:
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookMalformed("a refund event without data")
    refund_id, status_text = _field(data, "id"), _field(data, "status")
    if REFUND_STATUS.get(status_text) is not AttemptStatus.REFUNDED:
        raise WebhookIgnored(f"refund status {status_text}: the charge stays as it is")
    try:
        amount = money_from_provider(data.get("amount"), str(data.get("currency") or "IDR"), "data.amount")
    except InvalidValue as error:
        raise WebhookMalformed(str(error)) from None
    return PaymentEvent(
        provider=ProviderName.XENDIT,
        event_id=headers.get("webhook-id") or f"{refund_id}:{status_text}",
        status=AttemptStatus.REFUNDED,
        charge_reference=_field(data, "invoice_id"),
        amount=amount,
    )
