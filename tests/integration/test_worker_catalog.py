"""``billing worker`` without ``--catalog`` holds the catalog from the compacted topics the ledger's
outbox relay writes (``catalog.terms``, ``catalog.subscriptions``), on the real broker.

Catalog records are produced the way the relay does (Kafka transactions, values from
``subscription_to_json`` and ``terms_to_json``), under a topic prefix of the test's own. The
worker runs with a catalog refresh of an hour, so a record published after it started can only
be seen through the catch-up that comes before any "unknown" rejection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from invoicing.engine.subscriptions import Subscription
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.catalog import CATALOG_SUBSCRIPTIONS, CATALOG_TERMS
from invoicing.ledger.json_codec import subscription_to_json, terms_record_to_json
from invoicing.ports import SubscriptionRecord, TermsRecord
from rating.catalog import Metric
from rating.periods import BillingInterval
from streams.ingest.producer import UsageProducer
from streams.kafka import messages
from streams.kafka.catalog_tables import CatalogTables
from streams.kafka.topics import PIPELINE_TOPICS, USAGE_ACCEPTED, USAGE_DLQ, USAGE_EVENTS, USAGE_WINDOWS, ensure_topics
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 2
START = datetime(2026, 1, 1, tzinfo=UTC)
NOW_MS = int(time.time() * 1000)
WAIT_S = 90.0


class Pipeline:
    """A worker's topics under a prefix of their own, with the catalog and usage producers."""

    def __init__(self, bootstrap: str, tmp_path: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"wcat-{uuid.uuid4().hex[:10]}."
        self.app_id = f"{self.prefix}usage"
        self.tmp_path = tmp_path
        ensure_topics(bootstrap, PARTITIONS, topics=[self.prefix + t for t in PIPELINE_TOPICS])
        ensure_topics(
            bootstrap,
            3,
            topics=[self.prefix + CATALOG_SUBSCRIPTIONS, self.prefix + CATALOG_TERMS],
            config={"cleanup.policy": "compact"},
        )
        self.relay = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{self.prefix}relay"})
        self.relay.init_transactions(30)
        self.usage = UsageProducer(bootstrap, self.prefix + USAGE_EVENTS)
        self.sequence = 0

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """One catalog record in its own committed transaction, like the outbox relay's."""
        self.relay.begin_transaction()
        self.relay.produce(self.prefix + topic, key=key.encode(), value=json.dumps(value).encode())
        self.relay.commit_transaction(30)

    def subscription(self, subscription_id: str, tenant_id: str) -> None:
        sub = Subscription(subscription_id, tenant_id, "pro", START, timezone="Asia/Jakarta")
        record = SubscriptionRecord(sub, 1, BillingInterval.MONTH)
        self.publish(CATALOG_SUBSCRIPTIONS, subscription_id, subscription_to_json(record))

    def terms(self, tenant_id: str, *codes: str, revision: int = 1) -> None:
        terms = BillingTerms(tenant_id, {code: Metric(code) for code in codes})
        self.publish(CATALOG_TERMS, tenant_id, terms_record_to_json(TermsRecord(terms, revision)))

    def event(self, subscription_id: str, metric_code: str, tenant_id: str = "") -> str:
        """Send one usage event now; returns its idempotency key."""
        self.sequence += 1
        key = f"{subscription_id}-{self.sequence}"
        self.usage.send(UsageEvent(key, tenant_id, subscription_id, metric_code, 3.0, NOW_MS - 60_000, key))
        self.usage.flush(30)
        return key

    def wait_committed(self) -> None:
        """Until the worker's group has committed every message of ``usage.events``."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.app_id})
        try:
            topic = self.prefix + USAGE_EVENTS
            ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)]
            committed: list[TopicPartition] = []

            def all_committed() -> bool:
                committed[:] = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
                return all(c.offset >= end or end == 0 for c, end in zip(committed, ends, strict=True))

            wait_until(all_committed, WAIT_S, f"the worker to commit {ends}", diagnose=lambda: str(committed))
        finally:
            consumer.close()

    @contextmanager
    def worker(self, name: str, refresh_s: float = 3600) -> Iterator[Path]:
        """``billing worker --role usage`` without ``--catalog``; yields its log file."""
        log = self.tmp_path / f"{name}.log"
        command = [
            *(sys.executable, "-m", "billing.cli", "worker", "--role", "usage", "--processes", "1"),
            *("--bootstrap", self.bootstrap, "--partitions", str(PARTITIONS), "--store", "memory"),
            *("--data-dir", str(self.tmp_path / name), "--app-id", self.app_id, "--topic-prefix", self.prefix),
            *("--commit-interval", "0.1", "--catalog-refresh", str(refresh_s), "--log-level", "info"),
        ]
        with open(log, "wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy())
            try:
                yield log
                assert process.poll() is None, f"the worker exited with {process.returncode}: {log.read_text()[-3000:]}"
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


class Outputs:
    """Everything the worker wrote to one of its output topics, read as it arrives. Outputs are
    at-least-once (a replayed message is written again), so tests look at distinct values."""

    def __init__(self, pipeline: Pipeline, topic: str, decode: Callable[[bytes], Any], *, many: bool = False) -> None:
        """``decode`` gives a message's value; with ``many``, its values (a batch holds many rows)."""
        config = {"bootstrap.servers": pipeline.bootstrap, "group.id": f"{pipeline.prefix}reader"}
        self.consumer = Consumer({**config, "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(pipeline.prefix + topic, p, 0) for p in range(PARTITIONS)])
        self.topic = topic
        self.decode = decode
        self.many = many
        self.seen: set[Any] = set()

    def wait_for(self, *expected: Any) -> set[Any]:
        """Read until every one of ``expected`` has been seen; returns all seen so far."""
        wait_until(
            lambda: set(expected) <= self.seen,
            WAIT_S,
            f"{self.topic} to carry {sorted(expected)}",
            interval=0,
            step=self._read_one,
            diagnose=lambda: f"{self.topic}: no {sorted(set(expected) - self.seen)}",
        )
        return self.seen

    def _read_one(self) -> None:
        """Poll one message (half a second at most) into ``seen``."""
        message = self.consumer.poll(0.5)
        if message is None:
            return
        error = message.error()
        if error is not None and error.code() != KafkaError._PARTITION_EOF:
            raise AssertionError(error)
        if error is None:
            decoded = self.decode(message.value() or b"")
            self.seen.update(decoded if self.many else [decoded])


def accepted_keys(value: bytes) -> list[str]:
    return [record.idempotency_key for record in messages.read_records(value)]


def window_subscriptions(value: bytes) -> list[str]:
    return [row.key.subscription_id for row in messages.read_windows(value)]


def dead_letter(value: bytes) -> tuple[str, str]:
    letter = messages.read_dead_letter(value)
    [event] = messages.read_usage(letter["original"])
    return (event.subscription_id or "", letter["reason"])


def test_the_worker_validates_against_the_catalog_topics(kafka_broker: Any, tmp_path: Path) -> None:
    pipeline = Pipeline(kafka_broker.bootstrap, tmp_path)
    pipeline.terms("t1", "api_calls")
    pipeline.terms("t2", "storage")
    pipeline.terms("t2", "storage", "seats", revision=2)  # compaction's newest: t2 has both
    pipeline.subscription("sub_a", "t1")
    pipeline.subscription("sub_b", "t2")
    accepted = Outputs(pipeline, USAGE_ACCEPTED, accepted_keys, many=True)
    windows = Outputs(pipeline, USAGE_WINDOWS, window_subscriptions, many=True)
    letters = Outputs(pipeline, USAGE_DLQ, dead_letter)

    with pipeline.worker("first") as log:
        first = pipeline.event("sub_a", "api_calls", "t1")
        seats = pipeline.event("sub_b", "seats")  # no tenant on the event: the subscription's
        nobody = pipeline.event("sub_nobody", "api_calls", "t1")
        foreign = pipeline.event("sub_b", "api_calls", "t2")  # t1's metric is unknown to t2's subscription
        letters.wait_for(("sub_b", "unknown_metric"), ("sub_nobody", "unknown_subscription"))
        accepted.wait_for(first, seats)
        assert "catalog from" in log.read_text() and "2 subscriptions, 2 tenants' metrics" in log.read_text()

        # Published after the worker started, right before its first event; the periodic refresh
        # is an hour away, so only the catch-up before rejecting can accept it.
        pipeline.subscription("sub_late", "t1")
        late = pipeline.event("sub_late", "api_calls")
        accepted.wait_for(late)
        windows.wait_for("sub_a", "sub_b", "sub_late")
        assert "catalog caught up before rejecting an unknown" in log.read_text()
        pipeline.wait_committed()  # the restart below replays nothing

    # A restart rebuilds the tables from the topics alone; this time new records are read as they come.
    pipeline.terms("t1", "api_calls", "gb_hours", revision=2)
    with pipeline.worker("second", refresh_s=0.2) as log:
        again = pipeline.event("sub_late", "gb_hours")
        accepted.wait_for(again)
        assert "3 subscriptions, 2 tenants' metrics" in log.read_text()
        assert "caught up before rejecting" not in log.read_text()  # known from the start

        pipeline.terms("t2", "storage", "seats", "gpu", revision=3)
        wait_until(lambda: "catalog: 1 new records" in log.read_text(), WAIT_S, "the refresh to apply the new terms")
        gpu = pipeline.event("sub_b", "gpu")
        accepted.wait_for(gpu)
        assert "caught up before rejecting" not in log.read_text()  # the refresh had it

        pipeline.event("sub_late", "seats")  # t2's metric, t1's subscription
        letters.wait_for(("sub_late", "unknown_metric"))
    # Read in partition order past everything before it: sub_late's first event was not dead-lettered.
    assert letters.seen == {
        ("sub_b", "unknown_metric"),
        ("sub_nobody", "unknown_subscription"),
        ("sub_late", "unknown_metric"),
    }
    assert not {nobody, foreign} & accepted.seen


def test_catalog_tables_keep_the_newest_state_and_wait_for_open_transactions(kafka_broker: Any, tmp_path: Path) -> None:
    pipeline = Pipeline(kafka_broker.bootstrap, tmp_path)
    subscriptions, terms = pipeline.prefix + CATALOG_SUBSCRIPTIONS, pipeline.prefix + CATALOG_TERMS
    newer = SubscriptionRecord(
        Subscription("sub_a", "t1", "pro", START, "Europe/Paris"), 1, BillingInterval.MONTH, revision=2
    )
    older = SubscriptionRecord(Subscription("sub_a", "t1", "pro", START, "UTC"), 1, BillingInterval.MONTH, revision=1)
    pipeline.publish(CATALOG_SUBSCRIPTIONS, "sub_a", subscription_to_json(newer))
    pipeline.publish(CATALOG_SUBSCRIPTIONS, "sub_a", subscription_to_json(older))  # a lower revision: ignored
    pipeline.subscription("sub_gone", "t1")
    pipeline.relay.begin_transaction()
    pipeline.relay.produce(subscriptions, key=b"sub_gone", value=None)  # a tombstone
    pipeline.relay.produce(terms, key=b"t1", value=b"{not json")  # skipped: nothing held for t1
    pipeline.relay.commit_transaction(30)
    pipeline.terms("t2", "seats")
    pipeline.relay.begin_transaction()
    pipeline.relay.produce(terms, key=b"t2", value=b'{"tenant_id": "t2", "revision": 2}')  # skipped: t2 keeps seats
    pipeline.relay.commit_transaction(30)

    tables = CatalogTables(kafka_broker.bootstrap, subscriptions, terms)
    try:
        tables.catch_up()
        assert tables.subscriptions == {
            "sub_a": SubscriptionRef("sub_a", "t1", "Europe/Paris", int(START.timestamp() * 1000))
        }
        assert tables.metrics == {"t2": {"seats": Metric("seats")}}
        catalog = tables.catalog()
        assert catalog.metric_for is not None and catalog.metric_for("t2", "seats") == Metric("seats")
        assert catalog.metric_for("t1", "seats") is None and catalog.metric_of("seats") is None

        # A transaction written before the catch-up and committed during it is waited for.
        pipeline.relay.begin_transaction()
        pipeline.relay.produce(
            subscriptions,
            key=b"sub_new",
            value=json.dumps(
                subscription_to_json(
                    SubscriptionRecord(Subscription("sub_new", "t2", "pro", START), 1, BillingInterval.MONTH)
                )
            ).encode(),
        )
        pipeline.relay.flush(30)
        timer = threading.Timer(1.0, pipeline.relay.commit_transaction, (30,))
        timer.start()
        started = time.monotonic()
        tables.catch_up()
        timer.join()
        assert time.monotonic() - started >= 0.9
        assert tables.subscription_of("sub_new") == SubscriptionRef(
            "sub_new", "t2", "UTC", int(START.timestamp() * 1000)
        )
    finally:
        tables.close()
