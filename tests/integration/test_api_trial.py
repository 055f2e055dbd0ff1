"""BillingService's trial over the wire, on the usage store and a real broker: GetTrialStatus says
what is left of the balance (the trial's usage priced as the rater prices it, no included units),
RecordUsage sends the event to Kafka and answers its cost and the balance left, covered by the trial
until the usage before it reached the balance: the very event the rater's ``trial_used_up_at`` ends
the trial after. A replay of a stored event counts once; OnSubscriptionCreated reads back the trial
and the first period; errors name the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from functools import partial
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from billing.api_kafka import KafkaRecorder
from billing.usage_reader import StoreUsageReader
from invoicing.engine.subscriptions import open_cycle
from invoicing.engine.trials import trial_used_up_at
from invoicing.service import InvoiceService
from schemas.generated.smallbiznis.billing.v1 import billing_pb2 as B
from schemas.generated.smallbiznis.common.v1.money_pb2 import Money
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from streams.clickhouse.store import ClickHouseUsageStore
from streams.inprocess import InProcessPipeline
from streams.memory import MemoryDeadLetters
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef
from tests.api_harness import Api, pro_plan, serving, status_of, terms
from tests.integration.test_api_billing import billing
from tests.integration.test_api_rating import ms
from tests.integration.test_producer import read_back

pytestmark = pytest.mark.integration
START = "2026-03-01T00:00:00Z"
TRIAL_END = "2026-03-15T00:00:00Z"


@pytest.fixture
def topic(kafka_broker: Any) -> str:
    return str(kafka_broker.new_topic("api-trial", partitions=1))


@pytest.fixture
def trial(engine: Engine, chdb_client: Any, clickhouse_db: str, kafka_broker: Any, topic: str) -> Iterator[Api]:
    """t1's sub_tr: a 14-day trial from Mar 1 with a 10.00 USD balance, 3000 api_calls stored on Mar 2
    (6.00 at the first tier's 0.002: a trial has no included units); the clock on Mar 10."""
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    for api in serving(engine, store, KafkaRecorder(kafka_broker.bootstrap, topic)):
        api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
        request = S.CreateSubscriptionRequest(
            id="sub_tr", plan_code="pro", trial_days=14, trial_balance=Money(units=1000, currency_code="USD")
        )
        request.start_at.FromJsonString(START)
        api.subscriptions.CreateSubscription(request, metadata=api.auth())
        write(api, [UsageEvent("e0", "t1", "sub_tr", "api_calls", 3000, ms("2026-03-02T00:00:00"), "k0")])
        yield api


def write(api: Api, events: list[UsageEvent]) -> None:
    """What the usage worker and the sink do with the events: into the usage store, deduplicated."""
    assert api.usage is not None
    catalog = Catalog(terms("t1").metrics.get, lambda sub: SubscriptionRef(sub, "t1", "UTC"))
    pipeline = InProcessPipeline(
        catalog, api.usage, MemoryDeadLetters(), lambda: ms("2027-01-01T00:00:00"), tenant_of=lambda _: "t1"
    )
    pipeline.run(events)


def from_kafka(kafka_broker: Any, topic: str) -> list[UsageEvent]:
    return [e for _, _, decoded in read_back(kafka_broker.bootstrap, topic, 1) for e in decoded]


def record(api: Api, key: str, quantity: str, at: str = "2026-03-10T11:00:00Z", **fields: Any) -> Any:
    request = B.RecordUsageRequest(
        subscription_id="sub_tr", metric_code="api_calls", quantity=quantity, idempotency_key=key, **fields
    )
    request.recorded_at.FromJsonString(at)
    return billing(api).RecordUsage(request, metadata=api.auth())


def trial_status(api: Api) -> Any:
    request = B.GetTrialStatusRequest(subscription_id="sub_tr")
    return billing(api).GetTrialStatus(request, metadata=api.auth()).trial_status


def test_record_usage_deducts_from_the_trial_as_the_rater_ends_it(trial: Api, kafka_broker: Any, topic: str) -> None:
    api = trial
    status = trial_status(api)
    assert (status.enabled, status.expired, status.trial_balance.units) == (True, False, 400)
    assert (status.trial_start_at.ToJsonString(), status.trial_end_at.ToJsonString()) == (START, TRIAL_END)

    first = record(api, "r1", "1000", metadata={"src": "app"})
    assert (first.cost.units, first.billable, first.trial_balance_left.units) == (200, False, 200)
    assert (first.record.period_id, first.record.quantity, first.record.id) == ("", "1000", "r1")
    sent = from_kafka(kafka_broker, topic)
    assert [(e.idempotency_key, e.value, e.recorded_at_ms, dict(e.metadata)) for e in sent] == [
        ("r1", 1000.0, ms("2026-03-10T11:00:00"), {"src": "app"})
    ]
    write(api, sent)  # the pipeline wrote it: the status and the next answers count it
    assert trial_status(api).trial_balance.units == 200
    replay = record(api, "r1", "1000", metadata={"src": "app"})  # stored already: counted once
    assert (replay.cost.units, replay.trial_balance_left.units) == (200, 200)

    # 4000 used before it (8.00 < 10.00): covered by the trial, and it uses the balance up
    last = record(api, "r3", "2500", at="2026-03-10T11:30:00Z")
    assert (last.cost.units, last.billable, last.trial_balance_left.units) == (500, False, 0)
    write(api, [e for e in from_kafka(kafka_broker, topic) if e.idempotency_key == "r3"])
    status = trial_status(api)
    assert (status.expired, status.trial_balance.units) == (True, 0)
    # the rater ends the trial right after that event
    with api.ledger.session() as session:
        record_ = session.get_subscription("sub_tr")
        assert record_ is not None
        plan = session.get_plan("t1", "pro", 1)
        assert plan is not None
    cycle = open_cycle(record_.subscription, plan)
    pricing = InvoiceService(api.ledger, StoreUsageReader(api.usage), terms("t1"))  # type: ignore[arg-type]

    def rate(period: Any) -> Any:
        return pricing.rate(cycle.subscription, plan, period, Fraction(0), period.end)

    ended = trial_used_up_at(cycle, datetime(2026, 3, 10, 11, 30, tzinfo=UTC), partial(rate))
    assert ended is not None and ended.isoformat() == "2026-03-10T11:30:00.001000+00:00"

    after = record(api, "r4", "10", at="2026-03-10T11:45:00Z")  # past the used-up balance: billable
    assert (after.billable, after.trial_balance_left.units, after.cost.units) == (True, 0, 2)


def test_on_subscription_created_reads_back_the_trial_and_its_first_period(trial: Api) -> None:
    api = trial
    answer = billing(api).OnSubscriptionCreated(
        B.OnSubscriptionCreatedRequest(subscription_id="sub_tr", trial_days=14), metadata=api.auth()
    )
    period = answer.billing_period
    assert (period.period_start.ToJsonString(), period.period_end.ToJsonString(), period.status) == (
        START,
        TRIAL_END,
        B.BILLING_PERIOD_STATUS_OPEN,
    )
    assert answer.trial_status == trial_status(api)
    wrong = B.OnSubscriptionCreatedRequest(subscription_id="sub_tr", trial_days=7)
    assert status_of(billing(api).OnSubscriptionCreated, wrong, metadata=api.auth()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "trial_days: subscription 'sub_tr' was created with 14, not 7",
    )


def test_record_usage_errors_name_the_field_and_send_nothing(trial: Api, kafka_broker: Any, topic: str) -> None:
    api = trial
    INVALID, FAILED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    for key, quantity, fields, at, expected in (
        ("", "1", {}, "2026-03-10T11:00:00Z", (INVALID, "idempotency_key")),
        ("k", "abc", {}, "2026-03-10T11:00:00Z", (INVALID, "quantity")),
        ("k", "1", {"metric_code": "gold"}, "2026-03-10T11:00:00Z", (INVALID, "metric_code")),
        ("k", "1", {}, "2026-02-01T00:00:00Z", (FAILED, "recorded_at")),
    ):
        request = B.RecordUsageRequest(
            **{
                "subscription_id": "sub_tr",
                "metric_code": "api_calls",
                "quantity": quantity,
                "idempotency_key": key,
                **fields,
            }
        )
        request.recorded_at.FromJsonString(at)
        code, details = status_of(billing(api).RecordUsage, request, metadata=api.auth())
        assert (code, details.split(":")[0]) == expected, details
    other = B.RecordUsageRequest(subscription_id="sub_tr", metric_code="api_calls", quantity="1", idempotency_key="k")
    assert status_of(billing(api).RecordUsage, other, metadata=api.auth("t2"))[0] == grpc.StatusCode.NOT_FOUND
    assert from_kafka(kafka_broker, topic) == []


def test_without_a_broker_record_usage_is_unavailable(api_usage: Api) -> None:
    api = api_usage
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    api.subscriptions.CreateSubscription(S.CreateSubscriptionRequest(id="sub_tr", plan_code="pro"), metadata=api.auth())
    request = B.RecordUsageRequest(subscription_id="sub_tr", metric_code="api_calls", quantity="1", idempotency_key="k")
    code, details = status_of(billing(api).RecordUsage, request, metadata=api.auth())
    assert code == grpc.StatusCode.UNAVAILABLE and "Kafka" in details
