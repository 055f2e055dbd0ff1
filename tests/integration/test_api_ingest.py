"""IngestUsage over the wire, on a real broker: one event or a batch, checked whole before any is
sent, on the topic once the call answers (acks=all), as the SDK would have sent them; errors name
the field and send nothing; another tenant's subscription is NOT_FOUND; without a broker, or with
one that does not answer, UNAVAILABLE says how to start one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from billing.api_kafka import KafkaRecorder
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from schemas.generated.smallbiznis.usage.v1 import usage_pb2 as U
from tests.api_harness import Api, pro_plan, serving, status_of
from tests.integration.test_api_usage import usage
from tests.integration.test_producer import read_back

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka_broker: Any) -> str:
    return str(kafka_broker.new_topic("api-usage", partitions=2))


@pytest.fixture
def kafka_api(engine: Engine, kafka_broker: Any, topic: str) -> Iterator[Api]:
    yield from serving(engine, None, KafkaRecorder(kafka_broker.bootstrap, topic))


def subscribe(api: Api) -> None:
    for tenant in ("t1", "t2"):
        api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth(tenant))
        request = S.CreateSubscriptionRequest(id=f"sub_{tenant}", plan_code="pro")
        api.subscriptions.CreateSubscription(request, metadata=api.auth(tenant))


def record(key: str, value: float = 1, sub: str = "sub_t1", **fields: Any) -> U.UsageRecord:
    message = U.UsageRecord(
        **{"subscription_id": sub, "metric_code": "api_calls", "value": value, "idempotency_key": key, **fields}
    )
    if "recorded_at" not in fields:
        message.recorded_at.FromJsonString("2026-03-10T11:00:00.123Z")
    return message


def test_a_batch_is_on_kafka_when_the_call_answers(kafka_api: Api, kafka_broker: Any, topic: str) -> None:
    api = kafka_api
    subscribe(api)
    batch = U.IngestUsageRequest(
        record=record("k1", 0.5, metadata={"region": "eu"}), records=[record("k2", 3), record("k1", 0.5)]
    )
    assert usage(api).IngestUsage(batch, metadata=api.auth()).accepted_count == 3
    one = U.IngestUsageRequest(record=record("k3", 7, id="evt-3"))
    assert usage(api).IngestUsage(one, metadata=api.auth()).accepted_count == 1
    events = [e for _, _, decoded in read_back(kafka_broker.bootstrap, topic, 2) for e in decoded]
    got = sorted((e.idempotency_key, e.id, e.tenant_id, e.subscription_id, e.value, e.recorded_at_ms) for e in events)
    at = 1_773_140_400_123  # 2026-03-10T11:00:00.123Z
    assert got == [
        ("k1", "k1", "t1", "sub_t1", 0.5, at),
        ("k1", "k1", "t1", "sub_t1", 0.5, at),  # a duplicate travels; the pipeline counts it once
        ("k2", "k2", "t1", "sub_t1", 3.0, at),
        ("k3", "evt-3", "t1", "sub_t1", 7.0, at),
    ]
    assert [dict(e.metadata) for e in events if e.idempotency_key == "k1"] == [{"region": "eu"}, {}]  # in order


def test_a_bad_event_sends_nothing_and_is_named(kafka_api: Api, kafka_broker: Any, topic: str) -> None:
    api = kafka_api
    subscribe(api)
    for request, code, field in (
        (
            U.IngestUsageRequest(record=record("k1"), records=[record("")]),
            "INVALID_ARGUMENT",
            "records[0].idempotency_key",
        ),
        (
            U.IngestUsageRequest(records=[record("k1"), record("k2", float("nan"))]),
            "INVALID_ARGUMENT",
            "records[1].value",
        ),
        (U.IngestUsageRequest(records=[record("k1", recorded_at=None)]), "INVALID_ARGUMENT", "records[0].recorded_at"),
        (U.IngestUsageRequest(records=[record("k1", metric_code="")]), "INVALID_ARGUMENT", "records[0].metric_code"),
        (U.IngestUsageRequest(), "INVALID_ARGUMENT", "record"),
        (
            U.IngestUsageRequest(records=[record("k1"), record("k2", sub="sub_t2")]),
            "NOT_FOUND",
            "records[1].subscription_id",
        ),
    ):
        got, details = status_of(usage(api).IngestUsage, request, metadata=api.auth())
        assert (got.name, details.split(":")[0]) == (code, field), details
    named = U.IngestUsageRequest(record=record("k1", tenant_id="t2"))
    assert status_of(usage(api).IngestUsage, named, metadata=api.auth())[0] == grpc.StatusCode.PERMISSION_DENIED
    assert (
        status_of(usage(api).IngestUsage, U.IngestUsageRequest(record=record("k1")))[0]
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert read_back(kafka_broker.bootstrap, topic, 2) == []  # none of them sent anything


def test_without_a_broker_ingest_is_unavailable_and_says_how_to_start_one(api: Api, engine: Engine) -> None:
    subscribe(api)
    code, details = status_of(usage(api).IngestUsage, U.IngestUsageRequest(record=record("k1")), metadata=api.auth())
    assert (code, "ops/kafka.py start" in details) == (grpc.StatusCode.UNAVAILABLE, True)
    for dead in serving(engine, None, KafkaRecorder("127.0.0.1:1")):
        code, details = status_of(
            usage(dead).IngestUsage, U.IngestUsageRequest(record=record("k1")), metadata=dead.auth()
        )
        assert (code, "KAFKA_BOOTSTRAP_SERVERS" in details) == (grpc.StatusCode.UNAVAILABLE, True)
