"""RatingService in ``billing serve`` over the wire: RateSubscription prices any [start, end) of
the caller's subscription from the usage store (chDB here) with the ledger's plan; another
tenant's subscription is NOT_FOUND; without a usage store it answers UNAVAILABLE with the reason;
GetCurrentRating belongs to the rating agent and says so."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from rating.periods import epoch_ms
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.rating.v1 import rating_pb2 as R
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef
from tests.api_harness import Api, pro_plan, status_of, terms

pytestmark = pytest.mark.integration


def ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


def ingest(api: Api, events: list[tuple[str, str, float, str]]) -> None:
    """Usage (subscription, metric, value, instant) of t1 into the server's store, through the
    in-process pipeline (validation, dedup, windows) as the sink writes it."""
    assert api.usage is not None
    metrics = terms("t1").metrics
    catalog = Catalog(metrics.get, lambda sub: SubscriptionRef(sub, "t1"))
    pipeline = InProcessPipeline(
        catalog, api.usage, MemoryDeadLetters(), lambda: ms("2027-01-01"), tenant_of=lambda _: "t1"
    )
    pipeline.run(
        [
            UsageEvent(f"e{n}", "t1", sub, metric, value, ms(at), f"k{n}")
            for n, (sub, metric, value, at) in enumerate(events)
        ]
    )


def subscribe(api: Api, tenant: str = "t1") -> None:
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth(tenant))
    request = S.CreateSubscriptionRequest(id=f"sub_{tenant}", plan_code="pro")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth(tenant))


def rate(sub: str, start: str, end: str) -> R.RateSubscriptionRequest:
    request = R.RateSubscriptionRequest(subscription_id=sub)
    request.period_start.FromJsonString(start)
    request.period_end.FromJsonString(end)
    return request


def test_rate_subscription_prices_any_period_from_the_usage_store(api_usage: Api) -> None:
    api = api_usage
    subscribe(api)
    ingest(
        api,
        [
            ("sub_t1", "api_calls", 700, "2026-03-02T10:00:00"),
            ("sub_t1", "api_calls", 800, "2026-03-20T10:00:00"),
            ("sub_t1", "api_calls", 5, "2026-04-01T00:00:00"),  # the next period: not counted
        ],
    )
    result = api.rating.RateSubscription(
        rate("sub_t1", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"), metadata=api.auth()
    ).result
    calls = next(item for item in result.items if item.metric_code == "api_calls")
    # 1000 included, 500 billable at 0.002 (first graduated tier) = 1.00
    assert (calls.quantity, calls.amount.units, calls.amount.currency_code) == ("1500", 100, "USD")
    assert (calls.metadata["billable_units"], result.tenant_id, result.plan_code, result.plan_version) == (
        "500",
        "t1",
        "pro",
        1,
    )
    assert result.period_start.ToJsonString() == "2026-03-01T00:00:00Z"
    early = api.rating.RateSubscription(
        rate("sub_t1", "2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z"), metadata=api.auth()
    ).result
    assert [(i.metric_code, i.quantity, i.amount.units) for i in early.items] == [
        ("api_calls", "700", 0),
        ("storage_gb", "0", 0),
    ]


def test_rate_subscription_errors(api_usage: Api) -> None:
    api = api_usage
    subscribe(api)
    subscribe(api, "t2")
    march = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    code, details = status_of(api.rating.RateSubscription, rate("sub_t1", *march), metadata=api.auth("t2"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "subscription 'sub_t1' is not known to this rater")
    assert (
        status_of(api.rating.RateSubscription, rate("nope", *march), metadata=api.auth())[0]
        == grpc.StatusCode.NOT_FOUND
    )
    for request, field in (
        (rate("sub_t1", march[1], march[0]), "period_end"),
        (R.RateSubscriptionRequest(subscription_id="sub_t1"), "period_start"),
        (rate("", *march), "subscription_id"),
    ):
        code, details = status_of(api.rating.RateSubscription, request, metadata=api.auth())
        assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, field), details
    assert status_of(api.rating.RateSubscription, rate("sub_t1", *march))[0] == grpc.StatusCode.UNAUTHENTICATED
    code, details = status_of(
        api.rating.GetCurrentRating, R.GetCurrentRatingRequest(subscription_id="sub_t1"), metadata=api.auth()
    )
    assert (code, "rating agent" in details) == (grpc.StatusCode.UNIMPLEMENTED, True)


def test_without_a_usage_store_usage_rpcs_are_unavailable(api: Api) -> None:
    subscribe(api)
    request: Any = rate("sub_t1", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    code, details = status_of(api.rating.RateSubscription, request, metadata=api.auth())
    assert (code, "CLICKHOUSE_URL" in details, "none in this test" in details) == (
        grpc.StatusCode.UNAVAILABLE,
        True,
        True,
    )
