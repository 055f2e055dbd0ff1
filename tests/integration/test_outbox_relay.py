"""The outbox relay on the real broker and PostgreSQL: every committed outbox row arrives exactly
once (read_committed), in order per key, on the key's murmur2 partition, with its ``outbox-id``;
rows committed while the relay runs, out of id order, are not skipped; rolled-back rows never
appear; a crash before or after a commit republishes nothing; a zombie relay is fenced; a second
relay stands by; catalog changes land on the compacted catalog topics; ``billing relay --once``."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from sqlalchemy import Engine, func, select, text

from billing.publish.relay import OUTBOX_ID_HEADER, OutboxRelay, RelaySettings
from invoicing.engine.subscriptions import Subscription, SubscriptionStatus
from invoicing.ledger import tables
from invoicing.ledger.json_codec import plan_from_json, subscription_from_json
from invoicing.ledger.outbox import RELAY_LOCK
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import OutboxMessage
from rating.catalog import Plan, PlanMeter, PricingModel
from rating.periods import BillingInterval
from streams.ingest.partitioning import partition_of
from streams.kafka.topics import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, COMPACTED_TOPICS, OUTBOX_PROGRESS
from tests.kafka_fixtures import Broker, read_committed
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


@dataclass(frozen=True)
class Published:
    outbox_id: int
    topic: str
    key: str
    partition: int
    offset: int
    payload: Any


def published(bootstrap: str, topics: Sequence[str]) -> list[Published]:
    """Every committed record of ``topics`` (read_committed), in partition and offset order."""
    found = []
    for message in read_committed(bootstrap, topics):
        headers = dict(message.headers() or [])
        value = message.value()
        assert value is not None
        found.append(
            Published(
                int(headers[OUTBOX_ID_HEADER]),
                message.topic(),
                message.key().decode(),
                message.partition(),
                message.offset(),
                json.loads(value),
            )
        )
    return sorted(found, key=lambda p: (p.topic, p.partition, p.offset))


def committed_rows(engine: Engine, topic: str | None = None) -> dict[int, tuple[str, str, Any]]:
    query = select(tables.outbox).order_by(tables.outbox.c.id)
    if topic is not None:
        query = query.where(tables.outbox.c.topic == topic)
    with engine.connect() as connection:
        return {row.id: (row.topic, row.key, row.payload) for row in connection.execute(query)}


def unpublished(engine: Engine) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(tables.outbox).where(tables.outbox.c.published_at.is_(None))
        return int(connection.execute(query).scalar_one())


def partition_counts(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics
    return {name: len(metadata[name].partitions) for name in topics}


def assert_exactly_once(engine: Engine, got: list[Published], topics: Sequence[str], bootstrap: str) -> None:
    """Each committed row of ``topics`` once, with its key and payload, on its key's partition, and
    per key in id order (the writers of one key commit in id order)."""
    partitions = partition_counts(bootstrap, topics)
    rows = {i: row for i, row in committed_rows(engine).items() if row[0] in topics}
    ids = [p.outbox_id for p in got]
    assert len(ids) == len(set(ids)), f"published twice: {sorted(i for i in set(ids) if ids.count(i) > 1)[:10]}"
    assert set(ids) == set(rows), (
        f"missing {sorted(set(rows) - set(ids))[:10]}, extra {sorted(set(ids) - set(rows))[:10]}"
    )
    by_key: dict[str, list[int]] = defaultdict(list)
    for p in got:
        topic, key, payload = rows[p.outbox_id]
        assert (p.topic, p.key, p.payload) == (topic, key, payload)
        assert p.partition == partition_of(key, partitions[topic])
        by_key[p.key].append(p.outbox_id)
    for key, key_ids in by_key.items():
        assert key_ids == sorted(key_ids), f"key {key} out of order"


@pytest.fixture
def topic(kafka_broker: Broker) -> str:
    return kafka_broker.new_topic("outbox", PARTITIONS)


def own_relay_settings(
    bootstrap: str, *, batch_size: int, partitions: int, create_topics: Sequence[str]
) -> RelaySettings:
    """A relay of its own (transactional.id, progress topic) so tests never fence each other."""
    name = uuid.uuid4().hex[:10]
    return RelaySettings(
        bootstrap,
        transactional_id=f"relay-{name}",
        progress_topic=f"{OUTBOX_PROGRESS}-{name}",
        batch_size=batch_size,
        poll_interval_s=0.05,
        partitions=partitions,
        create_topics=create_topics,
    )


@pytest.fixture
def settings(kafka_broker: Broker) -> RelaySettings:
    return own_relay_settings(kafka_broker.bootstrap, batch_size=50, partitions=PARTITIONS, create_topics=())


def write(ledger: PostgresLedger, topic: str, key: str, n: int, rollback: bool = False) -> None:
    with ledger.session() as session:
        session.add_outbox(OutboxMessage(topic, key, {"key": key, "n": n, "amount": 10**20 + n, "note": "ü€"}))
        if rollback:
            raise RuntimeError("rolled back")


class Running:
    """A relay in a thread."""

    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.relay.run(self.stop)
        except BaseException as error:
            self.error = error

    def join(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def test_rows_committed_before_and_while_it_runs_arrive_once_in_order_per_key(
    engine: Engine, topic: str, settings: RelaySettings
) -> None:
    ledger = PostgresLedger(engine)
    for n in range(300):
        write(ledger, topic, f"s{n % 7}", n)
    relay = Running(OutboxRelay(engine, settings))

    def writer(keys: Sequence[str], seed: int) -> None:
        rng = random.Random(seed)
        for n in range(350):
            key = rng.choice(keys)
            if rng.random() < 0.05:
                with pytest.raises(RuntimeError):
                    write(ledger, topic, key, -n, rollback=True)
            else:
                write(ledger, topic, key, n)
            if rng.random() < 0.1:
                time.sleep(0.005)

    # two writers on disjoint keys: ids are drawn at insert, commits interleave, so rows become
    # visible out of id order; a relay that kept an id watermark would skip some
    writers = [threading.Thread(target=writer, args=([f"a{k}" for k in range(5)], 1))]
    writers.append(threading.Thread(target=writer, args=([f"b{k}" for k in range(5)], 2)))
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    wait_until(lambda: unpublished(engine) == 0, 60, "every outbox row to be published", interval=0.05)
    relay.join()
    got = published(settings.bootstrap_servers, [topic])
    assert len(got) >= 900
    assert_exactly_once(engine, got, [topic], settings.bootstrap_servers)
    assert all(p.payload["n"] >= 0 for p in got), "a rolled-back row was published"
    assert relay.relay.stats.published == len(got)


def test_a_rolled_back_transaction_publishes_nothing(engine: Engine, topic: str, settings: RelaySettings) -> None:
    ledger = PostgresLedger(engine)
    with pytest.raises(RuntimeError), ledger.session() as session:
        session.save_plan("t-rollback", Plan("pro", "USD", Decimal(49)))
        session.add_outbox(OutboxMessage(topic, "s1", {"n": 1}))
        raise RuntimeError("crash before commit")
    stats = OutboxRelay(engine, settings).run(threading.Event(), until_idle=True)
    assert stats.published == 0
    assert published(settings.bootstrap_servers, [topic]) == []
    write(ledger, topic, "s1", 2)  # the relay did run: the next commit goes through
    assert OutboxRelay(engine, settings).run(threading.Event(), until_idle=True).published == 1
    assert [p.payload["n"] for p in published(settings.bootstrap_servers, [topic])] == [2]


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", ["produced", "committed", "marked"])
def test_a_relay_that_dies_at_any_step_of_a_batch_is_resumed_without_duplicates(
    engine: Engine, topic: str, settings: RelaySettings, step: str
) -> None:
    """In-process crashes (the SIGKILL versions are in tests/faults/test_outbox_relay_crash.py):
    an open transaction is aborted by the next relay, a committed but unmarked batch is marked
    from Kafka's progress record and not sent again."""
    ledger = PostgresLedger(engine)
    for n in range(120):
        write(ledger, topic, f"s{n % 4}", n)
    batches = 0

    def crash(name: str, ids: Sequence[int]) -> None:
        nonlocal batches
        if name == step:
            batches += 1
            if batches == 2:
                raise Crash(name)

    with pytest.raises(Crash):
        OutboxRelay(engine, settings, on_step=crash).run(threading.Event())
    assert unpublished(engine) == {"produced": 70, "committed": 70, "marked": 20}[step]
    again = OutboxRelay(engine, settings)
    stats = again.run(threading.Event(), until_idle=True)
    assert stats.recovered == (50 if step == "committed" else 0)
    assert stats.published == {"produced": 70, "committed": 20, "marked": 20}[step]
    assert unpublished(engine) == 0
    assert_exactly_once(engine, published(settings.bootstrap_servers, [topic]), [topic], settings.bootstrap_servers)


def test_a_zombie_relay_is_fenced_and_its_batch_is_published_once(
    engine: Engine, topic: str, settings: RelaySettings
) -> None:
    """Relay A loses its database session (its lock with it) in the middle of a transaction and
    then tries to commit: relay B has taken over, fenced A and published everything once."""
    ledger = PostgresLedger(engine)
    for n in range(80):
        write(ledger, topic, f"s{n % 5}", n)
    paused, resume = threading.Event(), threading.Event()

    def hold(name: str, ids: Sequence[int]) -> None:
        if name == "produced" and not paused.is_set():
            paused.set()
            resume.wait(60)

    zombie = Running(OutboxRelay(engine, settings, on_step=hold))
    assert paused.wait(30)
    with engine.begin() as connection:  # A's lock session dies: a network partition, a server restart
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND classid = :k AND objsubid = 2"
            ),
            {"k": RELAY_LOCK},
        )
    successor = OutboxRelay(engine, settings)
    assert successor.run(threading.Event(), until_idle=True).published == 80
    resume.set()  # A now commits its batch: fenced, it must not publish or mark anything
    wait_until(
        lambda: zombie.relay.stats.activations >= 2 or zombie.error is not None,
        60,
        "the fenced relay to try again",
        interval=0.05,
    )
    zombie.join()
    assert zombie.relay.stats.published == 0
    assert_exactly_once(engine, published(settings.bootstrap_servers, [topic]), [topic], settings.bootstrap_servers)


def test_a_second_relay_stands_by_until_the_first_stops(engine: Engine, topic: str, settings: RelaySettings) -> None:
    ledger = PostgresLedger(engine)
    first = Running(OutboxRelay(engine, settings))
    wait_until(lambda: first.relay.active, 60, "the first relay to take the lock", interval=0.05)
    second = Running(OutboxRelay(engine, settings))
    for n in range(100):
        write(ledger, topic, f"s{n % 3}", n)
    wait_until(lambda: unpublished(engine) == 0, 60, "every outbox row to be published", interval=0.05)
    assert not second.relay.active and second.relay.stats.published == 0
    first.join()
    for n in range(100, 150):
        write(ledger, topic, f"s{n % 3}", n)
    wait_until(lambda: unpublished(engine) == 0, 60, "every outbox row to be published", interval=0.05)
    second.join()
    assert (first.relay.stats.published, second.relay.stats.published) == (100, 50)
    assert_exactly_once(engine, published(settings.bootstrap_servers, [topic]), [topic], settings.bootstrap_servers)


def test_catalog_changes_land_on_compacted_topics(
    engine: Engine, settings: RelaySettings, kafka_broker: Broker
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ledger = PostgresLedger(engine)
    v1 = Plan("pro", "USD", Decimal("49.00"), meters=(PlanMeter("calls", PricingModel.PER_UNIT, Decimal("0.002")),))
    v2 = replace(v1, base_price=Decimal("59.00"), version=2, billing_interval=BillingInterval.YEAR)
    start = datetime(2026, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)
    sub = Subscription(f"{tenant}-s1", tenant, "pro", start, "Asia/Kathmandu", "ID", False, 14, Decimal("5.5"))
    with ledger.session() as session:
        session.save_plan(tenant, v1)
        session.save_subscription(sub, plan_version=1)
    with ledger.session() as session:
        session.save_plan(tenant, v1)  # unchanged: no message
        session.save_subscription(sub, plan_version=1)  # unchanged: no message
        session.save_plan(tenant, v2)
        changed = session.save_subscription(replace(sub, coupon_code="WELCOME10"), status=SubscriptionStatus.TRIALING)
    assert (changed.plan_version, changed.revision, changed.billing_interval) == (2, 2, BillingInterval.YEAR)
    with pytest.raises(RuntimeError), ledger.session() as session:  # rolled back: no message either
        session.save_subscription(replace(sub, timezone="UTC"))
        raise RuntimeError("crash")
    relay_settings = replace(settings, create_topics=(CATALOG_PLANS, CATALOG_SUBSCRIPTIONS), partitions=6)
    assert OutboxRelay(engine, relay_settings).run(threading.Event(), until_idle=True).published == 4

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    for name in (*COMPACTED_TOPICS[:2], relay_settings.progress_topic):
        resource = ConfigResource(ResourceType.TOPIC, name)
        config = admin.describe_configs([resource])[resource].result()
        assert config["cleanup.policy"].value == "compact", name

    got = [p for p in published(kafka_broker.bootstrap, [CATALOG_PLANS, CATALOG_SUBSCRIPTIONS]) if tenant in p.key]
    got.sort(key=lambda p: p.outbox_id)  # plan versions are different keys, maybe on different partitions
    plans = [p for p in got if p.topic == CATALOG_PLANS]
    assert [p.key for p in plans] == [f"{tenant}/pro/1", f"{tenant}/pro/2"]
    assert [plan_from_json(p.payload) for p in plans] == [v1, v2]
    assert {p.payload["tenant_id"] for p in plans} == {tenant}
    subs = [subscription_from_json(p.payload) for p in got if p.topic == CATALOG_SUBSCRIPTIONS]
    assert [s.revision for s in subs] == [1, 2]
    assert subs[0].subscription == sub and subs[0].plan_version == 1
    assert subs[0].subscription.start_at == start  # microseconds survive
    assert subs[1] == changed
    with ledger.session() as session:
        assert session.get_subscription(sub.id) == changed
    assert_exactly_once(engine, got, [CATALOG_PLANS, CATALOG_SUBSCRIPTIONS], kafka_broker.bootstrap)


def test_a_subscription_needs_a_saved_plan_and_keeps_its_tenant(engine: Engine) -> None:
    from rating.errors import InvalidValue, UnknownReference

    ledger = PostgresLedger(engine)
    sub = Subscription("s1", "t1", "pro", datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(UnknownReference, match="plan_code"), ledger.session() as session:
        session.save_subscription(sub)
    with ledger.session() as session:
        session.save_plan("t1", Plan("pro", "USD", Decimal(1)))
        session.save_plan("t2", Plan("pro", "USD", Decimal(1)))
        session.save_subscription(sub)
    with pytest.raises(UnknownReference, match="version 3"), ledger.session() as session:
        session.save_subscription(sub, plan_version=3)
    with pytest.raises(InvalidValue, match="tenant_id"), ledger.session() as session:
        session.save_subscription(replace(sub, tenant_id="t2"))
    assert [row[0] for row in committed_rows(engine).values()] == [CATALOG_PLANS, CATALOG_PLANS, CATALOG_SUBSCRIPTIONS]


def test_billing_relay_once_publishes_what_is_pending(
    engine: Engine, topic: str, settings: RelaySettings, pg_url: str
) -> None:
    ledger = PostgresLedger(engine)
    for n in range(30):
        write(ledger, topic, f"s{n % 2}", n)
    env = {**os.environ, "DATABASE_URL": pg_url, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    command = [sys.executable, "-m", "billing.cli", "relay", "--once", "--batch", "7"]
    command += ["--transactional-id", settings.transactional_id, "--progress-topic", settings.progress_topic]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"published": 30, "batches": 5, "recovered": 0}
    assert_exactly_once(engine, published(settings.bootstrap_servers, [topic]), [topic], settings.bootstrap_servers)


def test_a_relay_refuses_a_progress_topic_of_another_relay(engine: Engine, topic: str, settings: RelaySettings) -> None:
    from billing.publish.relay import ProgressTopicShared

    write(PostgresLedger(engine), topic, "s1", 1)
    assert OutboxRelay(engine, settings).run(threading.Event(), until_idle=True).published == 1
    other = replace(settings, transactional_id=f"{settings.transactional_id}-other")
    write(PostgresLedger(engine), topic, "s1", 2)
    with pytest.raises(ProgressTopicShared, match=settings.transactional_id):
        OutboxRelay(engine, other).run(threading.Event(), until_idle=True)
    assert unpublished(engine) == 1


def test_the_memory_ledger_announces_catalog_changes_like_postgresql(engine: Engine) -> None:
    from invoicing.ledger.memory import MemoryLedger

    def changes(ledger: Any) -> None:
        plan = Plan("pro", "USD", Decimal("49.00"))
        sub = Subscription("s1", "t1", "pro", datetime(2026, 1, 1, tzinfo=UTC), trial_balance=Decimal("2.50"))
        with ledger.session() as session:
            session.save_plan("t1", plan)
            session.save_plan("t1", plan)
            session.save_subscription(sub)
        with ledger.session() as session:
            session.save_subscription(sub)
            session.save_plan("t1", replace(plan, version=2, name="Pro"))
            session.save_subscription(replace(sub, region_code="ID"), status=SubscriptionStatus.PAST_DUE)

    memory = MemoryLedger()
    changes(memory)
    changes(PostgresLedger(engine))
    in_postgres = [OutboxMessage(*row) for row in committed_rows(engine).values()]
    assert [m.topic for m in in_postgres] == [CATALOG_PLANS, CATALOG_SUBSCRIPTIONS] * 2
    assert memory.state.outbox == in_postgres
    with memory.session() as session:
        record = session.get_subscription("s1")
    assert record is not None
    assert (record.revision, record.plan_version, record.status) == (2, 2, SubscriptionStatus.PAST_DUE)
