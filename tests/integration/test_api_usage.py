"""UsageService reads over the wire: ListUsageMetrics lists the tenant's metrics;
GetUsageSummary cuts any [start, end) at the subscription's local hour/day/month windows and gives
each window's exact, deduplicated quantity and distinct events from the usage store; ListUsage
pages the distinct events; errors name the field; another tenant's subscription is NOT_FOUND
(IngestUsage: test_api_ingest.py)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from schemas.generated.smallbiznis.usage.v1 import usage_pb2 as U
from schemas.generated.smallbiznis.usage.v1 import usage_pb2_grpc
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef
from tests.api_harness import Api, pro_plan, status_of, terms
from tests.integration.test_api_rating import ms

pytestmark = pytest.mark.integration
KATHMANDU = "Asia/Kathmandu"  # UTC+05:45: local hours are not UTC hours


def usage(api: Api) -> Any:
    return usage_pb2_grpc.UsageServiceStub(api.channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def used(api_usage: Api) -> Api:
    """t1's sub_k in Kathmandu time, with api_calls at 10:00, 10:20 (and its duplicate) and 11:50 local."""
    api = api_usage
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    request = S.CreateSubscriptionRequest(id="sub_k", plan_code="pro", timezone=KATHMANDU)
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth())
    events = [("a", "04:15", 2.5), ("b", "04:35", 4), ("b", "04:35", 4), ("c", "06:05", 1)]  # UTC
    assert api.usage is not None
    catalog = Catalog(terms("t1").metrics.get, lambda sub: SubscriptionRef(sub, "t1", KATHMANDU))
    pipeline = InProcessPipeline(
        catalog, api.usage, MemoryDeadLetters(), lambda: ms("2027-01-01"), tenant_of=lambda _: "t1"
    )
    pipeline.run(
        [
            UsageEvent(f"e{n}", "t1", "sub_k", "api_calls", value, ms(f"2026-03-02T{at}:00"), key)
            for n, (key, at, value) in enumerate(events)
        ]
    )
    return api


def summary(
    granularity: str = "", start: str = "2026-03-02T04:00:00Z", end: str = "2026-03-02T07:00:00Z", **fields: Any
) -> U.GetUsageSummaryRequest:
    request = U.GetUsageSummaryRequest(**{"subscription_id": "sub_k", "granularity": granularity, **fields})
    request.start_time.FromJsonString(start)
    request.end_time.FromJsonString(end)
    return request


def test_a_summary_is_exact_per_local_window(used: Api) -> None:
    api = used
    whole = usage(api).GetUsageSummary(summary(metric_codes=["api_calls"]), metadata=api.auth()).aggregations
    assert [(a.total_value, a.event_count, a.window_granularity) for a in whole] == [("7.5", 3, "")]
    hours = usage(api).GetUsageSummary(summary("hour", metric_codes=["api_calls"]), metadata=api.auth()).aggregations
    # local hours start at :15 UTC in Kathmandu; the first and last are clipped to the request
    assert [
        (a.window_start.ToJsonString(), a.window_end.ToJsonString(), a.total_value, a.event_count) for a in hours
    ] == [
        ("2026-03-02T04:00:00Z", "2026-03-02T04:15:00Z", "0", 0),
        ("2026-03-02T04:15:00Z", "2026-03-02T05:15:00Z", "6.5", 2),
        ("2026-03-02T05:15:00Z", "2026-03-02T06:15:00Z", "1", 1),
        ("2026-03-02T06:15:00Z", "2026-03-02T07:00:00Z", "0", 0),
    ]
    assert {a.aggregation for a in hours} == {U.AGGREGATION_SUM}
    every = usage(api).GetUsageSummary(summary("day"), metadata=api.auth()).aggregations  # every metered meter
    assert [(a.metric_code, a.total_value) for a in every] == [("api_calls", "7.5"), ("storage_gb", "0")]
    month = summary("month", start="2026-02-15T00:00:00Z", end="2026-04-15T00:00:00Z", metric_codes=["api_calls"])
    months = usage(api).GetUsageSummary(month, metadata=api.auth()).aggregations
    assert [(a.window_end.ToJsonString(), a.total_value) for a in months] == [
        ("2026-02-28T18:15:00Z", "0"),  # local midnight of 1 March
        ("2026-03-31T18:15:00Z", "7.5"),
        ("2026-04-15T00:00:00Z", "0"),
    ]


def test_summary_errors_and_tenants(used: Api) -> None:
    api = used
    code, details = status_of(usage(api).GetUsageSummary, summary(), metadata=api.auth("t2"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "subscription_id: no subscription 'sub_k'")
    no_end = U.GetUsageSummaryRequest(subscription_id="sub_k")
    no_end.start_time.FromJsonString("2026-03-02T04:00:00Z")
    for request, field in (
        (summary("week"), "granularity"),
        (summary(metric_codes=["nope"]), "metric_codes[0]"),
        (no_end, "end_time"),
        (summary(start="2026-03-02T07:00:00Z"), "end_time"),
        (summary("hour", start="2020-01-01T00:00:00Z", end="2026-01-01T00:00:00Z"), "end_time"),
        (U.GetUsageSummaryRequest(), "subscription_id"),
    ):
        code, details = status_of(usage(api).GetUsageSummary, request, metadata=api.auth())
        assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, field), details


def listing(token: str = "", start: str = "2026-03-02T04:00:00Z", **fields: Any) -> U.ListUsageRequest:
    request = U.ListUsageRequest(**{"subscription_id": "sub_k", "page_size": 2, "page_token": token, **fields})
    request.start_time.FromJsonString(start)
    request.end_time.FromJsonString("2026-03-02T07:00:00Z")
    return request


def test_list_usage_pages_the_distinct_events(used: Api) -> None:
    api = used
    first = usage(api).ListUsage(listing(), metadata=api.auth())
    second = usage(api).ListUsage(listing(first.next_page_token), metadata=api.auth())
    assert second.next_page_token == ""
    records = [*first.records, *second.records]
    assert [(r.id, r.idempotency_key, r.value, r.recorded_at.ToJsonString()) for r in records] == [
        ("e0", "a", 2.5, "2026-03-02T04:15:00Z"),
        ("e1", "b", 4.0, "2026-03-02T04:35:00Z"),  # its duplicate e2 is not listed: first write wins
        ("e3", "c", 1.0, "2026-03-02T06:05:00Z"),
    ]
    assert {(r.tenant_id, r.subscription_id, r.metric_code) for r in records} == {("t1", "sub_k", "api_calls")}
    assert usage(api).ListUsage(listing(metric_code="storage_gb"), metadata=api.auth()).records == []
    code, details = status_of(usage(api).ListUsage, listing(), metadata=api.auth("t2"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "subscription_id: no subscription 'sub_k'")
    for request, field in (
        (listing("not-a-token"), "page_token"),
        (listing(start="2026-03-02T04:00:00.000500Z"), "start_time"),
        (listing(start="2026-03-02T08:00:00Z"), "end_time"),
        (listing(page_size=-1), "page_size"),
    ):
        code, details = status_of(usage(api).ListUsage, request, metadata=api.auth())
        assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, field), details


def test_list_usage_metrics_is_the_tenants(api: Api) -> None:
    metrics = usage(api).ListUsageMetrics(U.ListUsageMetricsRequest(), metadata=api.auth()).metrics
    assert [(m.code, m.aggregation, m.type) for m in metrics] == [
        ("api_calls", U.AGGREGATION_SUM, U.METRIC_TYPE_COUNTER),
        ("storage_gb", U.AGGREGATION_SUM, U.METRIC_TYPE_COUNTER),
    ]
    named = U.ListUsageMetricsRequest(tenant_id="t1")
    assert (
        status_of(usage(api).ListUsageMetrics, named, metadata=api.auth("t2"))[0] == grpc.StatusCode.PERMISSION_DENIED
    )


def test_a_summary_without_the_usage_store_is_unavailable(api: Api) -> None:
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    api.subscriptions.CreateSubscription(S.CreateSubscriptionRequest(id="sub_k", plan_code="pro"), metadata=api.auth())
    code, details = status_of(usage(api).GetUsageSummary, summary(), metadata=api.auth())
    assert (code, "CLICKHOUSE_URL" in details) == (grpc.StatusCode.UNAVAILABLE, True)
