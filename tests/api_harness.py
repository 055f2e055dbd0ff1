"""A real ``billing serve`` server (billing/api/server.py) on a free port against the test's
PostgreSQL database, real gRPC channels, and a key for each of two tenants."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from billing.api.ingest import UsageRecorder
from billing.api.keys import create_key
from billing.api.server import ApiServer
from billing.clock import TestClock
from billing.usage_reader import StoreUsageReader
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.payments import ProviderName
from invoicing.engine.tax import TaxRule
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.api_keys import PostgresApiKeys
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import PaymentProvider
from rating.catalog import Metric
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2_grpc
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2, pricing_pb2_grpc
from schemas.generated.smallbiznis.rating.v1 import rating_pb2_grpc
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2_grpc
from streams.clickhouse.events import ClickHouseEventLog
from streams.clickhouse.store import ClickHouseUsageStore

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TENANTS = ("t1", "t2")


@dataclass
class Api:
    engine: Engine
    ledger: PostgresLedger
    port: int
    channel: grpc.Channel
    keys: dict[str, str]
    clock: TestClock
    usage: ClickHouseUsageStore | None = None
    server: ApiServer | None = None

    def auth(self, tenant: str = "t1") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.keys[tenant]}")]

    @property
    def pricing(self) -> Any:
        return pricing_pb2_grpc.PricingServiceStub(self.channel)

    @property
    def subscriptions(self) -> Any:
        return subscription_pb2_grpc.SubscriptionServiceStub(self.channel)

    @property
    def invoices(self) -> Any:
        return invoice_pb2_grpc.InvoiceServiceStub(self.channel)

    @property
    def rating(self) -> Any:
        return rating_pb2_grpc.RatingServiceStub(self.channel)


def terms(tenant: str) -> BillingTerms:
    return BillingTerms(
        tenant,
        {"api_calls": Metric("api_calls"), "storage_gb": Metric("storage_gb")},
        (
            TaxRule("ID", "PPN", Decimal(11), is_default=True),
            TaxRule("SG", "GST", Decimal(9)),
            TaxRule("EU-DE", "VAT", Decimal(19), is_active=False),
        ),
        {"WELCOME10": Coupon("WELCOME10", percent_off=Decimal(10), duration=CouponDuration.ONCE)},
    )


def pro_plan(code: str = "pro", base_price: str = "49.00", currency: str = "USD") -> pricing_pb2.Plan:
    """A plan with every pricing model's fields on the wire, decimals finer than a cent."""
    P = pricing_pb2
    return P.Plan(
        code=code,
        name="Pro",
        currency_code=currency,
        base_price=base_price,
        billing_interval=P.BILLING_INTERVAL_MONTH,
        meters=[
            P.PlanMeter(
                metric_code="api_calls",
                pricing_model=P.PRICING_MODEL_TIERED,
                tier_mode=P.TIER_MODE_GRADUATED,
                included_units="1000",
                tiers=[P.Tier(up_to="10000", unit_price="0.002", flat_fee="0"), P.Tier(unit_price="0.000123456789")],
            ),
            P.PlanMeter(
                metric_code="storage_gb",
                pricing_model=P.PRICING_MODEL_PACKAGE,
                unit_price="5",
                package_size="10",
                overage_unit_price="0.75",
            ),
        ],
        metadata={"segment": "smb"},
    )


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    yield from serving(engine, None)


@pytest.fixture
def api_usage(engine: Engine, chdb_client: Any, clickhouse_db: str) -> Iterator[Api]:
    """``api`` with the usage store: a chDB database of the test's (``Api.usage``)."""
    yield from serving(engine, ClickHouseUsageStore(chdb_client, clickhouse_db))


def serving(
    engine: Engine,
    usage: ClickHouseUsageStore | None,
    recorder: UsageRecorder | None = None,
    pdf_dir: Path | None = None,
    providers: Mapping[ProviderName, PaymentProvider] | None = None,
) -> Iterator[Api]:
    ledger = PostgresLedger(engine)
    with ledger.session() as session:
        for tenant in TENANTS:
            session.save_terms(terms(tenant))
    store = PostgresApiKeys(engine)
    keys = {tenant: create_key(store, tenant, "test")[1] for tenant in TENANTS}
    clock = TestClock(NOW)
    reader = None if usage is None else StoreUsageReader(usage)
    log = None if usage is None else ClickHouseEventLog(usage.client, usage.db)
    server = ApiServer(
        engine,
        clock=clock,
        usage=reader,
        events=log,
        usage_problem="none in this test",
        recorder=recorder,
        pdf_dir=pdf_dir,
        providers={} if providers is None else providers,
    )
    port = server.start(0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield Api(engine, ledger, port, channel, keys, clock, usage, server)
    channel.close()
    server.stop(0)


def status_of(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and message a call fails with (the test fails if it succeeds)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError(f"{call} succeeded")
