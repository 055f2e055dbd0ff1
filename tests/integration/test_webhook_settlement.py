"""A provider's webhook, end to end on the real pieces: ChargeInvoice through the Xendit adapter
(against a local server playing Xendit's invoices API) leaves the attempt PROCESSING; Xendit's
signed callback, POSTed to the webhook endpoint that ``billing serve --webhooks-port`` runs, is
settled into the PostgreSQL ledger: the invoice PAID with ``paid_at``, one PaymentSucceeded on the
outbox. A redelivery is a duplicate that changes nothing, a wrong callback token changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine
from werkzeug import Request, Response

from billing.api.command import _payment_settlement
from billing.payments.providers.xendit import XenditProvider, XenditWebhookVerifier
from billing.payments.webhooks import WebhookServer
from invoicing.engine.payments import ProviderName
from schemas.generated.smallbiznis.payment.v1 import payment_pb2 as PM
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import Api, serving
from tests.integration.test_api_invoices import invoice_periods
from tests.payments_harness import charge, invoice_row, invoices_of, outbox, payments_stub

pytestmark = pytest.mark.integration

SECRET = "xnd_development_secret_for_tests_0123456789"
CALLBACK_TOKEN = "callback-token-for-tests"
XENDIT_ID = "64f1a2b3c4d5e6f7a8b9c0d1"


@pytest.fixture
def xendit_api(engine: Engine, httpserver: HTTPServer) -> Iterator[Api]:
    """``billing serve`` whose only provider is Xendit at the local server; t1's sub_x on an IDR
    plan with one finalized invoice."""

    def invoices(request: Request) -> Response:
        if request.method == "GET":  # the adapter's look for an invoice of this external_id first
            return Response("[]", content_type="application/json")
        sent = json.loads(request.get_data(as_text=True))
        answer = {**sent, "id": XENDIT_ID, "status": "PENDING", "invoice_url": f"https://checkout/{XENDIT_ID}"}
        return Response(json.dumps(answer), content_type="application/json")

    httpserver.expect_request("/v2/invoices").respond_with_handler(invoices)
    provider = XenditProvider(SECRET, base_url=httpserver.url_for("/"), timeout=5)
    for api in serving(engine, None, providers={ProviderName.XENDIT: provider}):
        plan = P.Plan(code="idr", currency_code="IDR", base_price="150000")
        api.pricing.CreatePlan(P.CreatePlanRequest(plan=plan), metadata=api.auth())
        request = S.CreateSubscriptionRequest(id="sub_x", plan_code="idr", region_code="ID")
        request.start_at.FromJsonString("2026-01-01T00:00:00Z")
        api.subscriptions.CreateSubscription(request, metadata=api.auth())
        invoice_periods(api, "sub_x", 1)
        yield api
    provider.close()


@pytest.fixture
def webhooks(engine: Engine) -> Iterator[str]:
    server = WebhookServer({"xendit": XenditWebhookVerifier(CALLBACK_TOKEN)}, _payment_settlement(engine))
    port = server.start(0)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def callback(external_id: str, amount: int) -> bytes:
    return json.dumps(
        {
            "id": XENDIT_ID,
            "external_id": external_id,
            "status": "PAID",
            "amount": amount,
            "paid_amount": amount,
            "currency": "IDR",
            "payment_channel": "BCA",
        }
    ).encode()


def post(url: str, body: bytes, token: str = CALLBACK_TOKEN) -> Any:
    headers = {"content-type": "application/json", "x-callback-token": token}
    return httpx.post(f"{url}/webhooks/xendit", content=body, headers=headers, timeout=10)


def test_xendit_callback_settles_the_invoice_once(xendit_api: Api, webhooks: str) -> None:
    method = PM.AttachPaymentMethodRequest(
        subscription_id="sub_x",
        provider=PM.PAYMENT_PROVIDER_XENDIT,
        type=PM.PAYMENT_METHOD_TYPE_VA,
        provider_payload={"token": "BCA"},
        set_as_default=True,
    )
    payments_stub(xendit_api).AttachPaymentMethod(method, metadata=xendit_api.auth())
    [invoice] = invoices_of(xendit_api, "sub_x")
    due = invoice.amount_due.units
    assert due > 0
    attempt = charge(xendit_api, invoice.id)
    assert PM.PaymentAttemptStatus.Name(attempt.status).endswith("PROCESSING")
    key = attempt.metadata["idempotency_key"]

    refused = post(webhooks, callback(key, due), token="not-the-token")
    assert refused.status_code == 401
    assert invoice_row(xendit_api.engine, invoice.id).status == "PENDING"

    first = post(webhooks, callback(key, due))
    assert (first.status_code, first.json()) == (200, {"status": "settled"})
    row = invoice_row(xendit_api.engine, invoice.id)
    assert (row.status, row.amount_paid, row.amount_due) == ("PAID", due, 0)
    assert row.paid_at is not None

    again = post(webhooks, callback(key, due))
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert invoice_row(xendit_api.engine, invoice.id).amount_paid == due
    succeeded = [e for e in outbox(xendit_api.engine) if e.get("type") == "PaymentSucceeded"]
    assert len(succeeded) == 1, outbox(xendit_api.engine)
