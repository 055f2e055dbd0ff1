"""Midtrans (docs.midtrans.com): Core API charges (``POST /v2/charge``) of a bank transfer virtual
account, GoPay, QRIS or a saved card, or a Snap transaction (``POST /snap/v1/transactions``) whose
page lets the customer choose; refunds are ``POST /v2/{order_id}/refund``. HTTP Basic with the
server key as the user and an empty password.

Idempotency: Midtrans accepts one transaction per ``order_id`` and answers 406 to a second, so the
order id is derived from the attempt's idempotency key (``order_id_for``: readable prefix plus a
hash, within Midtrans' 50 characters of letters, digits, ``-_~.``), and a 406 is answered with the
existing transaction's status (``GET /v2/{order_id}/status``). The order id is the charge's
reference, and a pure function of the key, so the ledger knows it before the charge returns (a
notification may arrive first). Refunds carry ``refund_key``, derived the same way.

Method tokens: ``bank_transfer:BANK`` (bca, bni, bri, permata, cimb), ``echannel`` (Mandiri bill),
``gopay``, ``qris``, ``credit_card:SAVED_TOKEN_ID``, or ``snap``. Amounts are IDR in whole rupiah.

Notifications are verified by ``signature_key`` = SHA512(order_id + status_code + gross_amount +
server key). Event id: ``{transaction_id}:{transaction_status}``, with the refund's key or id added
for refunds (a transaction can be partly refunded more than once); Midtrans sends one notification
per status change and may repeat it, and a repeat has the same id."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
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
from rating.money import Money

# The documented base URLs: Core API and Snap, sandbox and production.
ENVIRONMENTS = {
    "sandbox": ("https://api.sandbox.midtrans.com", "https://app.sandbox.midtrans.com"),
    "production": ("https://api.midtrans.com", "https://app.midtrans.com"),
}
CURRENCIES = frozenset({"IDR"})
BANKS = frozenset({"bca", "bni", "bri", "permata", "cimb"})
MAX_ORDER_ID = 50
_ORDER_ID_UNSAFE = re.compile(r"[^A-Za-z0-9\-_~.]")
_REFUND_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9\-_]")

SUCCEEDED_STATUSES = frozenset({"settlement", "capture"})
FAILED_STATUSES = frozenset({"deny", "cancel", "expire", "failure"})
REFUNDED_STATUSES = frozenset({"refund", "partial_refund"})


def order_id_for(idempotency_key: str) -> str:
    """The Midtrans order id of an attempt: the key's safe characters (at most 33) and 16 hex
    digits of its SHA-256, so two keys never share an order id however they are cut."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    return f"{_ORDER_ID_UNSAFE.sub('.', idempotency_key)[: MAX_ORDER_ID - 17]}-{digest}"


def refund_key_for(idempotency_key: str) -> str:
    """The ``refund_key`` of a refund (letters, digits, ``-`` and ``_``)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    return f"{_REFUND_KEY_UNSAFE.sub('_', idempotency_key)[:33]}-{digest}"


def _payment(token: str) -> dict[str, Any] | None:
    """The Core API fields of a method token; None for Snap."""
    kind, _, detail = token.partition(":")
    kind = kind.strip().lower()
    if kind == "snap":
        return None
    if kind == "bank_transfer" and detail.lower() in BANKS:
        return {"payment_type": "bank_transfer", "bank_transfer": {"bank": detail.lower()}}
    if kind == "echannel":
        return {"payment_type": "echannel", "echannel": {"bill_info1": "Payment:", "bill_info2": "Invoice"}}
    if kind in ("gopay", "qris") and not detail:
        return {"payment_type": kind}
    if kind == "credit_card" and detail:
        return {"payment_type": "credit_card", "credit_card": {"token_id": detail}}
    raise InvalidValue(
        "method_token",
        f"{token!r} is no Midtrans method: bank_transfer:{{{','.join(sorted(BANKS))}}}, echannel, gopay, qris, "
        "credit_card:SAVED_TOKEN_ID or snap",
    )


class MidtransProvider:
    """The PaymentProvider over Midtrans' Core API and Snap."""

    name = ProviderName.MIDTRANS

    def __init__(
        self,
        server_key: str,
        base_url: str = ENVIRONMENTS["sandbox"][0],
        snap_base_url: str = ENVIRONMENTS["sandbox"][1],
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._core = RestClient("Midtrans", base_url, server_key, timeout)
        self._snap = RestClient("Midtrans Snap", snap_base_url, server_key, timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MidtransProvider | None:
        """``MIDTRANS_SERVER_KEY`` (or ``_FILE``); ``MIDTRANS_ENVIRONMENT`` sandbox (default) or
        production picks the documented URLs, ``MIDTRANS_BASE_URL`` / ``MIDTRANS_SNAP_BASE_URL``
        override them. None when no key is set."""
        env = os.environ if environ is None else environ
        key = provider_secret("MIDTRANS_SERVER_KEY", env)
        if key is None:
            return None
        name = env.get("MIDTRANS_ENVIRONMENT") or "sandbox"
        if name not in ENVIRONMENTS:
            raise InvalidValue("MIDTRANS_ENVIRONMENT", f"must be sandbox or production, got {name!r}")
        core, snap = ENVIRONMENTS[name]
        return cls(key, env.get("MIDTRANS_BASE_URL") or core, env.get("MIDTRANS_SNAP_BASE_URL") or snap)

    def charge(self, request: ChargeRequest) -> ProviderCharge:
        amount = whole_units(request.amount, "Midtrans", CURRENCIES)
        payment = _payment(request.method_token)
        order_id = order_id_for(request.idempotency_key)
        body: dict[str, Any] = {
            "transaction_details": {"order_id": order_id, "gross_amount": amount},
            "item_details": [
                {"id": request.invoice_number[:50], "price": amount, "quantity": 1, "name": _item_name(request)}
            ],
            "custom_field1": request.invoice_number[:255],
            "custom_field2": request.customer_reference[:255],
        }
        if payment is None:
            return self._snap_charge(order_id, body)
        answer = self._core.request("POST", "/v2/charge", {**payment, **body})
        code = _status_code(answer.body, answer.status)
        if code == 406:  # this order id charged before: answer with what became of it
            return self._status(order_id)
        return _transaction_charge(order_id, answer.body, code)

    def _snap_charge(self, order_id: str, body: dict[str, Any]) -> ProviderCharge:
        answer = self._snap.request("POST", "/snap/v1/transactions", body)
        if answer.status in (200, 201) and isinstance(answer.body, dict) and answer.body.get("redirect_url"):
            return ProviderCharge(order_id, AttemptStatus.PROCESSING, action_url=str(answer.body["redirect_url"]))
        _refuse_credentials(answer.status)
        messages = answer.body.get("error_messages") if isinstance(answer.body, dict) else None
        if answer.status == 400 and messages and any("already been taken" in str(m) for m in messages):
            return self._status(order_id)
        reason = "; ".join(str(m) for m in messages) if isinstance(messages, list) else f"answered {answer.status}"
        return ProviderCharge(order_id, AttemptStatus.FAILED, failure_reason=f"Midtrans Snap: {reason}")

    def _status(self, order_id: str) -> ProviderCharge:
        answer = self._core.request("GET", f"/v2/{order_id}/status")
        code = _status_code(answer.body, answer.status)
        if code == 404:  # a Snap order nobody has paid yet has no transaction: still open
            return ProviderCharge(order_id, AttemptStatus.PROCESSING)
        return _transaction_charge(order_id, answer.body, code)

    def refund(self, request: RefundRequest) -> ProviderRefund:
        amount = whole_units(request.amount, "Midtrans", CURRENCIES)
        key = refund_key_for(request.idempotency_key)
        answer = self._core.request(
            "POST",
            f"/v2/{request.charge_reference}/refund",
            {"refund_key": key, "amount": amount, "reason": request.reason[:255]},
        )
        code = _status_code(answer.body, answer.status)
        _refuse_credentials(code)
        body = answer.body if isinstance(answer.body, dict) else {}
        if code == 200 and body.get("transaction_status") in REFUNDED_STATUSES:
            return ProviderRefund(str(body.get("refund_chargeback_id") or key), AttemptStatus.REFUNDED)
        if code in (200, 201):
            return ProviderRefund(key, AttemptStatus.PROCESSING)
        if code >= 500 or code == 429:
            raise ProviderUnavailable(f"Midtrans answered status_code {code} to the refund")
        return ProviderRefund(key, AttemptStatus.FAILED, failure_reason=_message(body, code))

    def close(self) -> None:
        self._core.close()
        self._snap.close()


def _item_name(request: ChargeRequest) -> str:
    return (request.description or f"Invoice {request.invoice_number}")[:50]


def _status_code(body: Any, http_status: int) -> int:
    """Midtrans puts the outcome's code in the body's ``status_code`` (a string), whatever HTTP said."""
    if isinstance(body, dict):
        try:
            return int(str(body.get("status_code")))
        except ValueError:
            pass
    return http_status


def _refuse_credentials(code: int) -> None:
    """A refused server key charged nothing: retried with the same order id once it is right."""
    if code in (401, 402, 403):
        raise ProviderUnavailable(f"Midtrans refused the credentials ({code}): check MIDTRANS_SERVER_KEY")


def _message(body: Mapping[str, Any], code: int) -> str:
    return f"Midtrans {code}: {body.get('status_message') or 'refused'}"


def _transaction_charge(order_id: str, body: Any, code: int) -> ProviderCharge:
    """A Core API transaction (a charge's answer or its status) as a ProviderCharge."""
    _refuse_credentials(code)
    if code >= 500 or code == 429:
        raise ProviderUnavailable(f"Midtrans answered status_code {code}")
    if not isinstance(body, dict):
        raise ProviderUnavailable("Midtrans answered without a JSON object")
    status = str(body.get("transaction_status") or "")
    if code in (200, 201, 202) and status:
        outcome = _outcome(status, str(body.get("fraud_status") or ""))
        if outcome is None:  # pending, authorize, a challenged capture: the notification decides
            return ProviderCharge(order_id, AttemptStatus.PROCESSING, action_url=_action_url(body))
        if outcome is AttemptStatus.FAILED:
            return ProviderCharge(
                order_id, outcome, failure_reason=f"Midtrans {status}: {body.get('status_message') or ''}".strip()
            )
        return ProviderCharge(order_id, outcome)
    return ProviderCharge(order_id, AttemptStatus.FAILED, failure_reason=_message(body, code))


def _outcome(transaction_status: str, fraud_status: str) -> AttemptStatus | None:
    """What a transaction status settles; None for one without an outcome yet."""
    if transaction_status == "capture" and fraud_status == "challenge":
        return None  # held for review in the dashboard: accept or deny follows
    if transaction_status == "capture" and fraud_status == "deny":
        return AttemptStatus.FAILED
    if transaction_status in SUCCEEDED_STATUSES:
        return AttemptStatus.SUCCEEDED
    if transaction_status in FAILED_STATUSES:
        return AttemptStatus.FAILED
    if transaction_status in REFUNDED_STATUSES:
        return AttemptStatus.REFUNDED
    return None


def _action_url(body: Mapping[str, Any]) -> str | None:
    """Where the customer pays: GoPay's deeplink or QR, or another redirect."""
    if body.get("redirect_url"):
        return str(body["redirect_url"])
    actions = body.get("actions")
    if isinstance(actions, list):
        urls = {a.get("name"): a.get("url") for a in actions if isinstance(a, dict)}
        url = urls.get("deeplink-redirect") or urls.get("generate-qr-code")
        return str(url) if url else None
    return None


class MidtransWebhookVerifier:
    """Midtrans HTTP notifications, signed with ``signature_key`` (SHA512 over the order id, status
    code, gross amount and the server key)."""

    provider = ProviderName.MIDTRANS

    def __init__(self, server_key: str) -> None:
        if not server_key:
            raise InvalidValue("MIDTRANS_SERVER_KEY", "is empty")
        self._key = server_key

    def __repr__(self) -> str:
        return "MidtransWebhookVerifier()"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MidtransWebhookVerifier | None:
        key = provider_secret("MIDTRANS_SERVER_KEY", environ)
        return None if key is None else cls(key)

    def verify(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        try:
            payload = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise WebhookMalformed("the body is not JSON") from None
        if not isinstance(payload, dict):
            raise WebhookMalformed("the body is not a JSON object")
        signature = payload.get("signature_key")
        if not isinstance(signature, str) or not signature:
            raise WebhookRejected("no signature_key")
        order_id, code, gross = (_text(payload, name) for name in ("order_id", "status_code", "gross_amount"))
        expected = hashlib.sha512(f"{order_id}{code}{gross}{self._key}".encode()).hexdigest()
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            raise WebhookRejected("signature_key does not match")
        status = _text(payload, "transaction_status")
        outcome = _outcome(status, str(payload.get("fraud_status") or ""))
        if outcome is None:
            raise WebhookIgnored(f"transaction status {status} carries no outcome")
        event_id = f"{_text(payload, 'transaction_id')}:{status}"
        currency = str(payload.get("currency") or "IDR")
        try:
            amount: Money | None = money_from_provider(gross, currency, "gross_amount")
            if outcome is AttemptStatus.REFUNDED:
                refund = _last_refund(payload)
                event_id += f":{refund.get('refund_key') or refund.get('refund_chargeback_id') or ''}"
                refunded = refund.get("refund_amount", payload.get("refund_amount"))
                amount = money_from_provider(refunded, currency, "refund_amount") if refunded is not None else None
        except InvalidValue as error:
            raise WebhookMalformed(str(error)) from None
        return PaymentEvent(
            provider=ProviderName.MIDTRANS,
            event_id=event_id,
            status=outcome,
            charge_reference=order_id,
            amount=amount,
            failure_reason=f"Midtrans {status}" if outcome is AttemptStatus.FAILED else None,
        )


def _text(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise WebhookMalformed(f"no {name}")
    return value


def _last_refund(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    refunds = payload.get("refunds")
    if isinstance(refunds, list) and refunds and isinstance(refunds[-1], dict):
        return refunds[-1]
    return {}
