"""The served lifecycle bills what ``billing simulate`` bills: a scenario's cancels and plan changes
are said over gRPC to ``billing serve`` (on a test clock) instead of in the file, the relay publishes
the revisions, and the wall-clock rater (on a set clock), a real usage worker and the invoice worker
finalize the periods. Said at their instant ("now"), or ahead of it with ``effective_at`` (the rater
holds them until its clock gets there), the invoices equal simulate's, prorated as design section 4
says, and a cancel at period end ends the subscription at the end of the period holding it."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka import Producer
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import create_engine

from billing.api.keys import create_key
from billing.api.server import ApiServer
from billing.catalog_cli import apply_catalog
from billing.clock import FileClock, TestClock, wall_ms
from billing.invoice.worker import InvoiceWorker, InvoiceWorkerSettings
from billing.publish.relay import OutboxRelay, RelaySettings
from billing.rate.rater import Rater
from billing.rate.settings import RaterSettings
from billing.simulate import Simulation, load_scenario
from billing.simulate.kafka import KafkaRun, usage_worker
from billing.simulate.scenario import Action
from billing.usage_reader import StoreUsageReader
from invoicing.ledger.api_keys import PostgresApiKeys
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from schemas import avro_codec
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2_grpc
from streams.clickhouse.store import ClickHouseUsageStore
from streams.ingest.producer import TUNING
from streams.kafka import messages
from streams.kafka.topics import PIPELINE_TOPICS, RATING_RESULTS, USAGE_EVENTS, ensure_topics
from streams.memory import MemoryUsageStore
from tests.integration.test_rater import _finalized, _unnumbered, _wait_finalized
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CASES = Path(__file__).parents[1] / "scenarios" / "cases"


def _stamp(action: Action) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(action.at)
    return stamp


def _say(stub: Any, auth: list[tuple[str, str]], action: Action, ahead: bool) -> None:
    """The action as a request: at its instant ("now"), or ``ahead`` with ``effective_at``."""
    if action.type == "cancel":
        request = S.CancelSubscriptionRequest(id=action.subscription_id, at_period_end=action.at_period_end)
        if ahead and not action.at_period_end:
            request.effective_at.CopyFrom(_stamp(action))
        stub.CancelSubscription(request, metadata=auth)
    else:
        assert action.plan_code is not None
        change = S.ChangeSubscriptionPlanRequest(id=action.subscription_id, new_plan_code=action.plan_code)
        if ahead:
            change.effective_at.CopyFrom(_stamp(action))
        stub.ChangeSubscriptionPlan(change, metadata=auth)


@pytest.mark.parametrize(
    ("name", "ahead"),
    [
        ("13_plan_change_proration", False),
        ("13_plan_change_proration", True),
        ("14_cancellation", False),
        ("14_cancellation", True),
        ("27_late_usage_after_cancel_at_period_end", False),
    ],
    ids=lambda v: {False: "now", True: "ahead"}.get(v, v) if isinstance(v, bool) else v,
)
def test_served_cancels_and_plan_changes_bill_as_simulate(
    name: str, ahead: bool, kafka_broker: Any, chdb_client: Any, clickhouse_db: str, pg_url: str, tmp_path: Path
) -> None:
    case = CASES / f"{name}.yaml"
    scenario = load_scenario(case)
    actions = [a for a in scenario.actions if a.type in ("cancel", "change_plan")]
    assert actions and len(actions) == len(scenario.actions)
    expected = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    bootstrap = kafka_broker.bootstrap
    run = KafkaRun(bootstrap, f"life-{uuid.uuid4().hex[:10]}.", partitions=2)
    ensure_topics(bootstrap, 2, topics=[run.topic(t) for t in PIPELINE_TOPICS])
    engine = create_engine(pg_url)
    ledger = PostgresLedger(engine)
    apply_catalog(ledger, scenario)  # terms, plans and subscriptions; the actions go over the wire
    start = min(s.start_at for s in scenario.subscriptions)
    api_clock = TestClock(start)
    server = ApiServer(engine, clock=api_clock)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.start(0)}")
    stub = subscription_pb2_grpc.SubscriptionServiceStub(channel)  # type: ignore[no-untyped-call]
    auth = [("authorization", f"Bearer {create_key(PostgresApiKeys(engine), scenario.tenant_id, 'test')[1]}")]
    relay = OutboxRelay(
        engine,
        RelaySettings(
            bootstrap,
            transactional_id=run.prefix + "relay",
            progress_topic=run.prefix + "outbox.progress",
            topic_prefix=run.prefix,
            partitions=2,
        ),
    )
    waiting = []
    for action in actions:  # said ahead: at the start, except a cancel at period end (it needs the clock there)
        if ahead and not action.at_period_end:
            _say(stub, auth, action, ahead=True)
        else:
            waiting.append(action)
    relay.run(threading.Event(), until_idle=True)
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    clock_file = tmp_path / "now"
    FileClock.set(clock_file, start)
    settings = RaterSettings(
        bootstrap, topic_prefix=run.prefix, usage_group=run.app_id, partitions=2, grace_period=scenario.grace_period
    )
    rater = Rater(settings, store, StoreUsageReader(store), ledger, FileClock(str(clock_file)))
    rater.start()
    invoices = InvoiceWorker(
        InvoiceWorkerSettings(bootstrap, group_id=run.prefix + "invoicer", topic=run.topic(RATING_RESULTS)),
        ledger,
        now_ms=wall_ms,
    )
    producer = Producer({"bootstrap.servers": bootstrap, **TUNING})
    instants = sorted(
        (
            {e.arrives_at for e in scenario.events}
            | {i.issued_at for i in expected if i.issued_at}
            | {a.at for a in waiting}
            | {scenario.run_until}
        )
        - {a.at for a in actions if a not in waiting}  # said ahead: the rater's clock jumps past their instant
    )
    try:
        with usage_worker(run, case, tmp_path / "worker.log"):
            for instant in instants:
                said = [a for a in waiting if a.at == instant]
                if said:
                    api_clock.advance_to(instant)
                    for action in said:
                        _say(stub, auth, action, ahead=False)
                    relay.run(threading.Event(), until_idle=True)
                for event in scenario.events:
                    if event.arrives_at == instant:
                        usage = event.usage_event()
                        value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(usage))
                        producer.produce(run.topic(USAGE_EVENTS), key=event.subscription_id.encode(), value=value)
                assert producer.flush(30) == 0
                if said:  # the rater reads the revisions before its clock moves on
                    subs = [a.subscription_id for a in said]

                    def read() -> bool:
                        return all(rater.catalog.subscriptions[sub].revision > 1 for sub in subs)  # noqa: B023

                    wait_until(read, 60, "the rater to read the served changes", interval=0, step=rater.run_once)
                FileClock.set(clock_file, instant)
                rater.run_once()
                due = [i for i in expected if i.issued_at is not None and i.issued_at <= instant]
                _wait_finalized(ledger, scenario.tenant_id, len(due), rater, invoices)
            rater.close()
    finally:
        invoices.close()
        channel.close()
        server.stop(0)
        engine.dispose()
    assert _unnumbered(_finalized(ledger, scenario.tenant_id)) == _unnumbered(expected)
