"""``smallbiznis.payment.v1.PaymentService`` on the ledger's payments (billing/payments/service.py).

Methods belong to a subscription of the caller's tenant; another tenant's subscription, invoice or
method answers NOT_FOUND like an unknown id. ChargeInvoice answers the attempt as it stands after
the provider's answer: SUCCEEDED, FAILED (with the retry the tenant's schedule sets), PROCESSING
(a webhook settles it), or PENDING when the provider did not answer (the payment worker resends it
with the same idempotency key). Its ``idempotency_key`` answers a retried request with its attempt.
"""

from __future__ import annotations

from typing import Any

import grpc

from billing.api import wire
from billing.payments.service import PaymentService
from invoicing.engine.lifecycle import TransitionRefused
from invoicing.engine.payments import NoPaymentMethod, PaymentAttempt, PaymentMethod, PaymentMethodType, ProviderName
from rating.errors import BillingError, InvalidValue, UnknownReference
from rating.limits import MAX_KEY, MAX_TEXT, bounded_text
from schemas.generated.smallbiznis.payment.v1 import payment_pb2, payment_pb2_grpc

PROVIDERS = {
    payment_pb2.PAYMENT_PROVIDER_STRIPE: ProviderName.STRIPE,
    payment_pb2.PAYMENT_PROVIDER_XENDIT: ProviderName.XENDIT,
    payment_pb2.PAYMENT_PROVIDER_MIDTRANS: ProviderName.MIDTRANS,
    payment_pb2.PAYMENT_PROVIDER_DUMMY: ProviderName.DUMMY,
}
TYPES = {
    payment_pb2.PAYMENT_METHOD_TYPE_CARD: PaymentMethodType.CARD,
    payment_pb2.PAYMENT_METHOD_TYPE_VA: PaymentMethodType.VA,
    payment_pb2.PAYMENT_METHOD_TYPE_EWALLET: PaymentMethodType.EWALLET,
}
SHOWN = ("token", "last4", "exp_month", "exp_year")


def method_message(method: PaymentMethod) -> payment_pb2.PaymentMethod:
    provider = next(k for k, v in PROVIDERS.items() if v is method.provider)
    kind = next(k for k, v in TYPES.items() if v is method.type)
    return payment_pb2.PaymentMethod(
        id=method.id,
        tenant_id=method.tenant_id,
        subscription_id=method.subscription_id,
        provider=provider,
        type=kind,
        display_name=method.display_name,
        last4=method.last4,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
        is_default=method.is_default,
        provider_data={"token": method.token, **method.provider_data},
    )


def attempt_message(attempt: PaymentAttempt) -> payment_pb2.PaymentAttempt:
    message = payment_pb2.PaymentAttempt(
        id=str(attempt.id),
        tenant_id=attempt.tenant_id,
        invoice_id=str(attempt.invoice_id),
        payment_method_id=attempt.payment_method_id,
        status=f"PAYMENT_ATTEMPT_STATUS_{attempt.status}",
        provider_transaction_id=attempt.provider_reference or "",
        amount=wire.money(attempt.amount),
        attempt_number=attempt.attempt_number,
        failure_code=attempt.failure_code or "",
        failure_message=attempt.failure_message or "",
        attempted_at=wire.timestamp(attempt.attempted_at),
        metadata={"invoice_number": attempt.invoice_number, "idempotency_key": attempt.idempotency_key},
    )
    if attempt.next_retry_at is not None:
        message.next_retry_at.CopyFrom(wire.timestamp(attempt.next_retry_at))
    return message


def _invoice_id(context: Any, text: str) -> int:
    if not text:
        wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invoice_id: is required")
    if not (text.isdigit() and len(text) <= 18):
        wire.abort(context, grpc.StatusCode.NOT_FOUND, f"invoice_id: no invoice {text[:40]!r}")
    return int(text)


def _small_int(payload: dict[str, str], name: str, high: int) -> int:
    text = payload.get(name, "")
    if not text:
        return 0
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise InvalidValue(f"provider_payload.{name}", f"must be 1 to {high}, got {text[:20]!r}")
    return int(text)


def _status(context: Any, error: BillingError) -> None:
    """A domain error as its status: unknown references NOT_FOUND, refused moves and missing
    methods FAILED_PRECONDITION, other bad values INVALID_ARGUMENT."""
    if isinstance(error, UnknownReference):
        wire.abort(context, grpc.StatusCode.NOT_FOUND, str(error))
    if isinstance(error, TransitionRefused | NoPaymentMethod):
        wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
    wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, service: PaymentService) -> None:
        self.service = service

    def ListPaymentMethods(
        self, request: payment_pb2.ListPaymentMethodsRequest, context: Any
    ) -> payment_pb2.ListPaymentMethodsResponse:
        tenant = wire.tenant(context, request.tenant_id)
        methods = self.service.payments.methods(tenant, request.subscription_id or None)
        return payment_pb2.ListPaymentMethodsResponse(payment_methods=[method_message(m) for m in methods])

    def AttachPaymentMethod(
        self, request: payment_pb2.AttachPaymentMethodRequest, context: Any
    ) -> payment_pb2.AttachPaymentMethodResponse:
        tenant = wire.tenant(context, request.tenant_id)
        if not request.subscription_id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id: is required")
        if request.provider not in PROVIDERS:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "provider: is required")
        if request.type not in TYPES:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "type: is required")
        if PROVIDERS[request.provider] not in self.service.providers:
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"provider: {PROVIDERS[request.provider]} is not configured on this server",
            )
        payload = dict(request.provider_payload)
        try:
            if not payload.get("token"):
                raise InvalidValue("provider_payload.token", "is required (the provider's handle of the method)")
            token = bounded_text(payload["token"], "provider_payload.token", MAX_KEY)
            last4 = payload.get("last4", "")
            if last4 and not (len(last4) == 4 and last4.isdigit()):
                raise InvalidValue("provider_payload.last4", "must be 4 digits")
            extra = {
                k: bounded_text(v, f"provider_payload.{k}", MAX_TEXT) for k, v in payload.items() if k not in SHOWN
            }
            method = PaymentMethod(
                id="",
                tenant_id=tenant,
                subscription_id=request.subscription_id,
                provider=PROVIDERS[request.provider],
                type=TYPES[request.type],
                token=token,
                display_name=request.display_name and bounded_text(request.display_name, "display_name", MAX_TEXT),
                last4=last4,
                exp_month=_small_int(payload, "exp_month", 12),
                exp_year=_small_int(payload, "exp_year", 9999),
                is_default=request.set_as_default,
                provider_data=extra,
            )
            stored = self.service.payments.attach_method(method, self.service.now())
        except BillingError as error:
            _status(context, error)
        return payment_pb2.AttachPaymentMethodResponse(payment_method=method_message(stored))

    def ChargeInvoice(
        self, request: payment_pb2.ChargeInvoiceRequest, context: Any
    ) -> payment_pb2.ChargeInvoiceResponse:
        tenant = wire.tenant(context)
        invoice_id = _invoice_id(context, request.invoice_id)
        method_id = request.payment_method_id if request.HasField("payment_method_id") else None
        try:
            key = request.idempotency_key and bounded_text(request.idempotency_key, "idempotency_key", MAX_KEY)
            attempt = self.service.charge(tenant, invoice_id, method_id or None, key or None)
        except BillingError as error:
            _status(context, error)
        return payment_pb2.ChargeInvoiceResponse(payment_attempt=attempt_message(attempt))

    def GetPaymentAttempts(
        self, request: payment_pb2.GetPaymentAttemptsRequest, context: Any
    ) -> payment_pb2.GetPaymentAttemptsResponse:
        tenant = wire.tenant(context)
        invoice_id = _invoice_id(context, request.invoice_id)
        if self.service.payments.invoice(tenant, invoice_id) is None:
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"invoice_id: no invoice {request.invoice_id!r}")
        attempts = self.service.payments.attempts(tenant, invoice_id)
        return payment_pb2.GetPaymentAttemptsResponse(payment_attempts=[attempt_message(a) for a in attempts])

    def RefundInvoice(
        self, request: payment_pb2.RefundInvoiceRequest, context: Any
    ) -> payment_pb2.RefundInvoiceResponse:
        tenant = wire.tenant(context)
        invoice_id = _invoice_id(context, request.invoice_id)
        try:
            reason = request.reason and bounded_text(request.reason, "reason", MAX_TEXT)
            attempt = self.service.refund(tenant, invoice_id, reason)
        except BillingError as error:
            _status(context, error)
        return payment_pb2.RefundInvoiceResponse(payment_attempt=attempt_message(attempt))

    def VoidInvoice(self, request: payment_pb2.VoidInvoiceRequest, context: Any) -> payment_pb2.VoidInvoiceResponse:
        """An unpaid invoice voided (docs/payments.md); a VOID one answers as it is."""
        tenant = wire.tenant(context)
        invoice_id = _invoice_id(context, request.invoice_id)
        try:
            reason = request.reason and bounded_text(request.reason, "reason", MAX_TEXT)
            invoice, restored = self.service.payments.void_invoice(tenant, invoice_id, reason or "", self.service.now())
        except BillingError as error:
            _status(context, error)
        return payment_pb2.VoidInvoiceResponse(
            invoice_id=str(invoice.id), status=f"INVOICE_STATUS_{invoice.status}", credit_restored=wire.money(restored)
        )
