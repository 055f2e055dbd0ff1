"""RatingService over gRPC (``billing/api/rating_service.py``): a real server on an ephemeral
port, real channels. Running results round-trip exactly (decimal strings, minor units, the
proration fraction, instants to the microsecond); errors name what is wrong; health and
reflection answer; and a real rating agent over chDB is served as it re-rates."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from billing.api.rating_service import SERVICE_NAME, PeriodRater, RatingServer, rating_result_message
from billing.rate.agent import RatingAgent
from billing.usage_reader import StoreUsageReader
from invoicing.engine.subscriptions import Subscription, open_cycle
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.memory import MemoryLedger
from rating.catalog import Metric, Plan, PlanMeter, PricingModel, Tier
from rating.periods import Period, epoch_ms
from rating.rate import RatingResult, rate_period
from schemas.generated.smallbiznis.rating.v1 import rating_pb2, rating_pb2_grpc
from streams.clickhouse.store import ClickHouseUsageStore
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef

pytestmark = pytest.mark.integration

JAN = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
RATED_AT = datetime(2026, 1, 10, 7, 30, 15, 123456, tzinfo=UTC)
PLAN = Plan(
    "pro",
    "USD",
    Decimal("49.00"),
    meters=(
        PlanMeter("api_calls", PricingModel.PER_UNIT, Decimal("0.000123"), included_units=Decimal(100)),
        PlanMeter(
            "storage_gb",
            PricingModel.TIERED,
            tiers=(Tier(Decimal(10), Decimal("0.5")), Tier(None, Decimal("0.25"), flat_fee=Decimal("1.10"))),
        ),
    ),
    version=7,
)
BHD_PLAN = Plan("gulf", "BHD", meters=(PlanMeter("api_calls", PricingModel.PER_UNIT, Decimal("0.0017")),), version=2)


def priced(subscription_id: str = "sub_1", proration: Fraction = Fraction(9, 31)) -> RatingResult:
    usage = {"api_calls": Decimal("10000.500000000000"), "storage_gb": Decimal("12.000000000001")}
    return rate_period(subscription_id, PLAN, JAN, usage, rated_at=RATED_AT, proration=proration)


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start a RatingServer on an ephemeral port; returns (server, stub, channel)."""
    started: list[tuple[RatingServer, grpc.Channel]] = []

    def start(current: Any, **kwargs: Any) -> tuple[RatingServer, Any, grpc.Channel]:
        server = RatingServer(current, **kwargs)
        port = server.start(0, "127.0.0.1")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        started.append((server, channel))
        return server, rating_pb2_grpc.RatingServiceStub(channel), channel

    yield start
    for server, channel in started:
        channel.close()
        server.stop(0)


def test_running_result_round_trips_exactly(serve: Any) -> None:
    result = priced()
    _, stub, _ = serve({"sub_1": result}.get, tenant_of={"sub_1": "t1"}.get)
    response = stub.GetCurrentRating(rating_pb2.GetCurrentRatingRequest(subscription_id="sub_1"), timeout=10)

    wire = response.result
    assert wire == rating_result_message(result, "t1")
    assert (wire.subscription_id, wire.tenant_id, wire.plan_code, wire.plan_version) == ("sub_1", "t1", "pro", 7)
    assert wire.proration == "9/31" and Fraction(wire.proration) == result.proration
    assert wire.period_start.ToDatetime(tzinfo=UTC) == JAN.start
    assert wire.period_end.ToDatetime(tzinfo=UTC) == JAN.end
    assert wire.rated_at.ToDatetime(tzinfo=UTC) == RATED_AT  # microseconds kept
    assert response.as_of == wire.rated_at

    calls, storage = wire.items
    # Plain decimal strings, the same value (no exponent, no trailing zeros), as the proto says.
    assert calls.quantity == "10000.5" and Decimal(calls.quantity) == result.items[0].quantity
    assert storage.quantity == "12.000000000001"
    # Included units prorated 9/31: 100 × 9/31 = 29.032258064516…; billable 10000.5 − that, at
    # 0.000123 = 1.226491 USD → 123 cents, rounded once, half-up.
    assert (calls.amount.units, calls.amount.currency_code, calls.currency_code) == (123, "USD", "USD")
    assert calls.unit_price == "0.000123"
    # Graduated tiers: 10 × 0.5 + 2.000000000001 × 0.25 + 1.10 = 6.60000000000025 → 660 cents; no
    # single unit price.
    assert storage.amount.units == 660
    assert not storage.HasField("unit_price")
    assert storage.metadata["tier_2_units"] == "2.000000000001"
    assert storage.metadata["tier_2_flat_fee"] == "1.1"
    assert dict(calls.metadata) == result.items[0].metadata()
    assert [i.amount.units for i in wire.items] == [i.amount.amount for i in result.items]


def test_minor_units_follow_the_currency_and_a_full_period_is_1(serve: Any) -> None:
    usage = {"api_calls": Decimal("1234.5")}
    result = rate_period("sub_bhd", BHD_PLAN, JAN, usage, rated_at=RATED_AT)
    _, stub, _ = serve({"sub_bhd": result}.get)
    wire = stub.GetCurrentRating(rating_pb2.GetCurrentRatingRequest(subscription_id="sub_bhd"), timeout=10).result
    (item,) = wire.items
    assert (item.amount.units, item.amount.currency_code) == (2099, "BHD")  # 2.09865 BHD in fils (exponent 3)
    assert wire.proration == "1"
    assert wire.tenant_id == ""


def test_errors_name_what_is_wrong(serve: Any) -> None:
    _, stub, _ = serve({"sub_1": priced()}.get)
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetCurrentRating(rating_pb2.GetCurrentRatingRequest(subscription_id="sub_nope"), timeout=10)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert "sub_nope" in missing.value.details()
    with pytest.raises(grpc.RpcError) as empty:
        stub.GetCurrentRating(rating_pb2.GetCurrentRatingRequest(), timeout=10)
    assert empty.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "subscription_id" in empty.value.details()
    with pytest.raises(grpc.RpcError) as unrated:
        stub.RateSubscription(rating_pb2.RateSubscriptionRequest(subscription_id="sub_1"), timeout=10)
    assert unrated.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "GetCurrentRating" in unrated.value.details()


def test_with_keys_a_caller_sees_only_its_tenants_subscriptions(serve: Any) -> None:
    """billing serve's rule on the rating server: no key is UNAUTHENTICATED; another tenant's
    subscription, or one whose tenant is unknown, is NOT_FOUND like an unknown one; health is open."""
    current = {"sub_1": priced("sub_1"), "sub_2": priced("sub_2"), "sub_x": priced("sub_x")}
    keys = {"key-t1": "t1", "key-t2": "t2"}
    _, stub, channel = serve(current.get, tenant_of={"sub_1": "t1", "sub_2": "t2"}.get, authenticate=keys.get)

    def rating(subscription_id: str, key: str | None) -> Any:
        metadata = [] if key is None else [("authorization", f"Bearer {key}")]
        request = rating_pb2.GetCurrentRatingRequest(subscription_id=subscription_id)
        return stub.GetCurrentRating(request, metadata=metadata, timeout=10)

    assert rating("sub_1", "key-t1").result.tenant_id == "t1"
    assert rating("sub_2", "key-t2").result.tenant_id == "t2"
    for subscription_id, key, code in [
        ("sub_1", None, grpc.StatusCode.UNAUTHENTICATED),
        ("sub_1", "key-t3", grpc.StatusCode.UNAUTHENTICATED),
        ("sub_1", "key-t2", grpc.StatusCode.NOT_FOUND),
        ("sub_x", "key-t1", grpc.StatusCode.NOT_FOUND),
        ("sub_nope", "key-t1", grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            rating(subscription_id, key)
        assert refused.value.code() is code, (subscription_id, key)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_health_serving_and_reflection(serve: Any) -> None:
    _, _, channel = serve({}.get)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

    reflected = ProtoReflectionDescriptorDatabase(channel)
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= set(reflected.get_services())
    service = descriptor_pool.DescriptorPool(reflected).FindServiceByName(SERVICE_NAME)
    assert {"GetCurrentRating", "RateSubscription"} <= set(service.methods_by_name)


def test_readers_never_see_a_result_other_than_one_published(serve: Any) -> None:
    """A writer thread replaces the entry (the agent's rule) while clients read over gRPC: every
    answer is one of the published results, whole, and a client never goes back in time."""
    current: dict[str, RatingResult] = {}

    def version(n: int) -> RatingResult:
        usage = {"api_calls": Decimal(n), "storage_gb": Decimal(n) / 4}
        return rate_period("sub_1", PLAN, JAN, usage, rated_at=RATED_AT + timedelta(seconds=n))

    current["sub_1"] = version(0)
    _, stub, _ = serve(current.get, max_workers=4)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            current["sub_1"] = version(n)

    writer = threading.Thread(target=write)
    writer.start()
    problems: list[str] = []

    def read() -> None:
        last = -1
        for _ in range(300):
            wire = stub.GetCurrentRating(rating_pb2.GetCurrentRatingRequest(subscription_id="sub_1"), timeout=10)
            n = int(wire.result.items[0].quantity)
            if wire.result != rating_result_message(version(n)) or wire.as_of != wire.result.rated_at:
                problems.append(f"answer for version {n} is not what was published")
            if n < last:
                problems.append(f"went back from {last} to {n}")
            last = n

    readers = [threading.Thread(target=read) for _ in range(3)]
    try:
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(60)
    finally:
        stop.set()
        writer.join(10)
    assert problems == []


def test_a_rating_agent_over_chdb_is_served_as_it_re_rates(
    serve: Any, kafka_broker: Any, chdb_client: Any, clickhouse_db: str, request: pytest.FixtureRequest
) -> None:
    """The wiring of the rater process: events through the operators into chDB, the agent
    re-rates the open period from the store, the server answers with ``agent.current.get``."""
    metrics = {"api_calls": Metric("api_calls"), "storage_gb": Metric("storage_gb")}
    terms = BillingTerms("t1", metrics)
    subscription = Subscription("sub_live", "t1", "pro", JAN.start)
    cycle = open_cycle(subscription, PLAN)
    assert cycle.period == JAN
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    pipeline = InProcessPipeline(
        Catalog(metrics.get, {"sub_live": SubscriptionRef("sub_live", "t1", start_ms=epoch_ms(JAN.start))}.get),
        store,
        MemoryDeadLetters(),
        lambda: epoch_ms(JAN.end),
        tenant_of=lambda _: "t1",
    )
    hour = 3_600_000

    def write(first: int, metric: str, values: list[float]) -> None:
        for n, value in enumerate(values, first):
            at = epoch_ms(JAN.start) + n * hour
            pipeline.process(UsageEvent(f"{metric}-{n}", "t1", "sub_live", metric, value, at, f"{metric}-{n}"))
        pipeline.flush()

    write(0, "api_calls", [1.5, 2.25, 0.1, 1000])
    write(0, "storage_gb", [12.5])
    agent = RatingAgent(kafka_broker.bootstrap, StoreUsageReader(store), MemoryLedger(), terms)
    request.addfinalizer(agent.producer.close)  # publishes nothing here; no retries after the broker stops
    now = datetime(2026, 1, 5, tzinfo=UTC)
    agent.refresh([cycle], now)
    cycles = {"sub_live": cycle}
    rater = PeriodRater(MemoryLedger(), StoreUsageReader(store), agent.terms_of, cycles.get, lambda: now)
    _, stub, _ = serve(agent.current.get, rate=rater, tenant_of=lambda s: cycles[s].subscription.tenant_id)

    def served() -> rating_pb2.GetCurrentRatingResponse:
        return stub.GetCurrentRating(rating_pb2.GetCurrentRatingRequest(subscription_id="sub_live"), timeout=10)

    first = served()
    assert first.result == rating_result_message(agent.current["sub_live"], "t1")
    assert [(i.metric_code, i.quantity) for i in first.result.items] == [
        ("api_calls", "1003.85"),
        ("storage_gb", "12.5"),
    ]
    # 903.85 above 100 included at 0.000123 = 0.11117355 USD → 11 cents; 10 × 0.5 + 2.5 × 0.25 + 1.10 → 673
    assert [i.amount.units for i in first.result.items] == [11, 673]
    assert first.as_of.ToDatetime(tzinfo=UTC) == now
    assert (first.result.period_start.ToDatetime(tzinfo=UTC), first.result.proration) == (JAN.start, "1")

    write(100, "api_calls", [5000])  # the sink writes more usage, the agent re-rates
    later = datetime(2026, 1, 6, 12, tzinfo=UTC)
    agent.refresh([cycle], later)
    second = served()
    assert second.result == rating_result_message(agent.current["sub_live"], "t1")
    assert second.result.items[0].quantity == "6003.85"
    assert second.as_of.ToDatetime(tzinfo=UTC) == later

    # RateSubscription: any [start, end) of the subscription, read from the same store.
    rate_request = rating_pb2.RateSubscriptionRequest(subscription_id="sub_live")
    rate_request.period_start.FromDatetime(JAN.start)
    rate_request.period_end.FromDatetime(JAN.start + timedelta(hours=2))  # the first two api_calls events
    window = stub.RateSubscription(rate_request, timeout=10).result
    assert [(i.metric_code, i.quantity) for i in window.items] == [("api_calls", "3.75"), ("storage_gb", "12.5")]
    assert (window.tenant_id, window.period_end.ToDatetime(tzinfo=UTC)) == ("t1", JAN.start + timedelta(hours=2))
    rate_request.subscription_id = "sub_other"
    with pytest.raises(grpc.RpcError) as unknown:
        stub.RateSubscription(rate_request, timeout=10)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND and "sub_other" in unknown.value.details()
    backwards = rating_pb2.RateSubscriptionRequest(
        subscription_id="sub_live", period_start=rate_request.period_end, period_end=rate_request.period_start
    )
    with pytest.raises(grpc.RpcError) as invalid:
        stub.RateSubscription(backwards, timeout=10)
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "period_end" in invalid.value.details()
