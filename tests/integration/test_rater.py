"""The wall-clock rater on the real broker, chDB and PostgreSQL: the catalog goes from the ledger
through ``billing relay`` to the catalog topics, usage through a real ``billing worker`` and the
rater's sink, periods close on a clock the test sets (``FileClock``), and the invoice worker
finalizes them. The invoices equal ``billing simulate``'s for the same scenario, and a rater
restarted midway hands nothing over twice and still bills late usage."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy import create_engine

from billing.catalog_cli import apply_catalog
from billing.clock import FileClock, wall_ms
from billing.invoice.worker import InvoiceWorker, InvoiceWorkerSettings
from billing.publish.relay import OutboxRelay, RelaySettings
from billing.rate.rater import Rater
from billing.rate.settings import RaterSettings
from billing.simulate import Simulation, load_scenario
from billing.simulate.kafka import KafkaRun, usage_worker
from billing.usage_reader import StoreUsageReader
from invoicing.engine.render import invoice_to_dict
from invoicing.engine.subscriptions import SubscriptionStatus
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from schemas import avro_codec
from streams.clickhouse.store import ClickHouseUsageStore
from streams.ingest.producer import TUNING
from streams.kafka import messages
from streams.kafka.topics import PIPELINE_TOPICS, RATING_RESULTS, USAGE_EVENTS, ensure_topics
from streams.memory import MemoryUsageStore
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CASES = Path(__file__).parents[1] / "scenarios" / "cases"


def _results_published(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in metadata.partitions)
    finally:
        consumer.close()


@pytest.mark.parametrize(
    "name",
    [
        "22_late_usage_adjustment",
        "17_coupons",
        "18_tax_exclusive_by_region",
        "15_trial",
        "16_trial_balance_used_up",
        # late usage of an ended subscription (the trial expired): standalone adjustment invoices
        "28_late_usage_after_trial_expired",
        "29_late_usage_after_end_same_cycle",
        "30_late_usage_after_end_two_cycles",
    ],
)
def test_the_rater_on_a_set_clock_gives_the_invoices_of_simulate(
    name: str, kafka_broker: Any, chdb_client: Any, clickhouse_db: str, pg_url: str, tmp_path: Path
) -> None:
    case = CASES / f"{name}.yaml"
    scenario = load_scenario(case)
    expected = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    bootstrap = kafka_broker.bootstrap
    run = KafkaRun(bootstrap, f"rater-{uuid.uuid4().hex[:10]}.", partitions=2)
    ensure_topics(bootstrap, 2, topics=[run.topic(t) for t in PIPELINE_TOPICS])
    engine = create_engine(pg_url)
    ledger = PostgresLedger(engine)
    apply_catalog(ledger, scenario)
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
    relay.run(threading.Event(), until_idle=True)
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    clock_file = tmp_path / "now"
    FileClock.set(clock_file, min(s.start_at for s in scenario.subscriptions))
    settings = RaterSettings(
        bootstrap, topic_prefix=run.prefix, usage_group=run.app_id, partitions=2, grace_period=scenario.grace_period
    )

    def rater() -> Rater:
        started = Rater(settings, store, StoreUsageReader(store), ledger, FileClock(str(clock_file)))
        started.start()
        return started

    invoices = InvoiceWorker(
        InvoiceWorkerSettings(bootstrap, group_id=run.prefix + "invoicer", topic=run.topic(RATING_RESULTS)),
        ledger,
        now_ms=wall_ms,
    )
    producer = Producer({"bootstrap.servers": bootstrap, **TUNING})  # murmur2, as the worker checks
    instants = sorted(
        {e.arrives_at for e in scenario.events} | {i.issued_at for i in expected if i.issued_at} | {scenario.run_until}
    )
    restart_at = instants[len(instants) // 2]
    try:
        with usage_worker(run, case, tmp_path / "worker.log"):
            current = rater()
            for instant in instants:
                if instant == restart_at:  # a restart: the calendar comes back from billing.calendar
                    current.close()
                    current = rater()
                for event in scenario.events:
                    if event.arrives_at == instant:
                        usage = event.usage_event()
                        value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(usage))
                        producer.produce(run.topic(USAGE_EVENTS), key=event.subscription_id.encode(), value=value)
                assert producer.flush(30) == 0
                FileClock.set(clock_file, instant)
                current.run_once()
                assert current.waiting == [], "every due period is handed over once the usage is in"
                due = [i for i in expected if i.issued_at is not None and i.issued_at <= instant]
                _wait_finalized(ledger, scenario.tenant_id, len(due), current, invoices)
            served = {family.name for family in current.metrics.registry.collect()}
            assert {"billing_sink_rows", "billing_sink_event_to_queryable_seconds"} <= served, served
            published = _results_published(bootstrap, run.topic(RATING_RESULTS))
            again = rater()  # a restart at the end: nothing is due again
            again.run_once()
            assert again.handed == 0
            # the running results are those of the open periods, never of a closed one
            running = {sub: result.period for sub, result in again.agent.current.items()}
            assert running == {
                c.subscription.id: c.period for c in again.calendar.cycles.values() if c.period is not None
            }
            assert _results_published(bootstrap, run.topic(RATING_RESULTS)) == published
            again.close()
    finally:
        invoices.close()
        engine.dispose()

    # Invoices of one instant are numbered in the order the invoice worker receives them (its
    # partitions run in parallel), simulate numbers them in subscription order: the same numbers,
    # gapless, and otherwise the same invoices.
    got = _unnumbered(_finalized(ledger, scenario.tenant_id))
    assert got == _unnumbered(expected)
    numbers = sorted(str(i.invoice_number) for i in _finalized(ledger, scenario.tenant_id))
    assert numbers == sorted(str(i.invoice_number) for i in expected)
    if name == "16_trial_balance_used_up":
        # the rater wrote the trial's early end on the ledger's subscription: its status is read
        # true (ACTIVE from then on, as the invoices have it), not TRIALING until the nominal end
        (sub,) = scenario.subscriptions
        (trial,) = [i for i in expected if i.subscription_id == sub.id]
        with ledger.session() as session:
            record = session.get_subscription(sub.id)
        assert record is not None and record.lifecycle.trial_end_at == trial.period.end
        assert record.status_at(scenario.run_until) is SubscriptionStatus.ACTIVE


def _wait_finalized(ledger: PostgresLedger, tenant_id: str, due: int, rater: Rater, invoices: InvoiceWorker) -> None:
    """Until the invoice worker has finalized ``due`` invoices of the tenant. The rater keeps
    ticking, as its loop does: usage that ends a trial may reach the sink only after the first tick
    at this instant (a loaded worker)."""

    def tick() -> None:
        rater.run_once()
        invoices.run_once()

    wait_until(
        lambda: len(_finalized(ledger, tenant_id)) >= due,
        60,
        "the invoice worker to finalize what was handed over",
        interval=0,
        step=tick,
    )


def _unnumbered(invoices: list[Any]) -> list[dict[str, Any]]:
    rendered = [invoice_to_dict(i) for i in invoices]
    for invoice in rendered:
        invoice.pop("invoice_number")
    return sorted(rendered, key=lambda i: (i["subscription_id"], i["billing_period_start"]))


def _finalized(ledger: PostgresLedger, tenant_id: str) -> list[Any]:
    with ledger.session() as session:
        return sorted(session.list_invoices(tenant_id), key=lambda i: i.invoice_number or "")
