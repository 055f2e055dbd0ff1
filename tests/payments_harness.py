"""Payments on a served API: ``billing serve`` with the DUMMY provider (journaled in the test's
directory, as a real provider keeps its charges), a plan, two subscriptions with finalized
invoices, and helpers to attach methods and read the ledger's payment rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from billing.payments.providers.dummy import DummyProvider
from billing.payments.service import PaymentService, PaymentWorker
from invoicing.engine.payments import ProviderName
from invoicing.ledger import tables as t
from invoicing.ledger.postgres_payments import PostgresPayments
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.payment.v1 import payment_pb2 as PM
from schemas.generated.smallbiznis.payment.v1 import payment_pb2_grpc
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import Api, serving
from tests.integration.test_api_invoices import invoice_periods


def payments_stub(api: Api) -> Any:
    return payment_pb2_grpc.PaymentServiceStub(api.channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def dummy(tmp_path: Path) -> DummyProvider:
    return DummyProvider(tmp_path / "dummy", delay=0.05)


@pytest.fixture
def pay_api(engine: Engine, dummy: DummyProvider) -> Iterator[Api]:
    """``billing serve`` with DUMMY; t1's sub_1 and sub_2 on a flat 10.00 USD plan (+ PPN 11%:
    1110 a month) from 2026-01-01, sub_1 with two finalized invoices, sub_2 with one."""
    for api in serving(engine, None, providers={ProviderName.DUMMY: dummy}):
        plan = P.Plan(code="flat", currency_code="USD", base_price="10")
        api.pricing.CreatePlan(P.CreatePlanRequest(plan=plan), metadata=api.auth())
        for sub in ("sub_1", "sub_2"):
            request = S.CreateSubscriptionRequest(id=sub, plan_code="flat", region_code="ID")
            request.start_at.FromJsonString("2026-01-01T00:00:00Z")
            api.subscriptions.CreateSubscription(request, metadata=api.auth())
        invoice_periods(api, "sub_1", 2)
        invoice_periods(api, "sub_2", 1)
        yield api


def attach(api: Api, sub: str, token: str, default: bool = True, tenant: str = "t1") -> Any:
    request = PM.AttachPaymentMethodRequest(
        subscription_id=sub,
        provider=PM.PAYMENT_PROVIDER_DUMMY,
        type=PM.PAYMENT_METHOD_TYPE_CARD,
        provider_payload={"token": token, "last4": "4242", "exp_month": "12", "exp_year": "2030"},
        set_as_default=default,
        display_name=f"card {token}",
    )
    return payments_stub(api).AttachPaymentMethod(request, metadata=api.auth(tenant)).payment_method


def invoices_of(api: Api, sub: str) -> list[Any]:
    request = I.ListInvoicesRequest(subscription_id=sub)
    return list(api.invoices.ListInvoices(request, metadata=api.auth()).invoices)


def charge(api: Api, invoice_id: str, key: str = "", method: str | None = None) -> Any:
    request = PM.ChargeInvoiceRequest(invoice_id=invoice_id, idempotency_key=key)
    if method is not None:
        request.payment_method_id = method
    return payments_stub(api).ChargeInvoice(request, metadata=api.auth()).payment_attempt


def outbox(engine: Engine, topic: str = "payment.events") -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(t.outbox.c.payload).where(t.outbox.c.topic == topic).order_by(t.outbox.c.id))
        return [dict(row.payload) for row in rows]


def invoice_row(engine: Engine, invoice_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(t.invoices).where(t.invoices.c.id == int(invoice_id))).one()


def worker(api: Api, dummy: DummyProvider) -> PaymentWorker:
    """A payment worker on the test's ledger and clock, with the same DUMMY provider."""
    service = PaymentService(PostgresPayments(api.ledger), {ProviderName.DUMMY: dummy}, api.clock.now)
    return PaymentWorker(service)
