"""``billing rebuild-usage``: the usage store rebuilt from the ``usage.accepted`` topic after its
data is lost (the restore drill of docs/operations.md § Backups and restore).

It reads every committed record of the topic, from the start of each partition to the end
that partition had when the command began. Records arriving after that are left to the sink.
The records go through ``streams.store.rebuild``. The timezones and metrics come from the
ledger's catalog (``DATABASE_URL``, else the embedded PostgreSQL under ``--ledger-dir``) or,
with ``--catalog``, from a scenario file, as ``billing worker --catalog`` takes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.operators.records import UsageRecord


def add_rebuild_command(commands: Any) -> None:
    rebuild = commands.add_parser(
        "rebuild-usage", help="rebuild the usage store (events and 15-minute buckets) from the usage.accepted topic"
    )
    rebuild.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    rebuild.add_argument("--topic-prefix", default="", help="the worker's --topic-prefix")
    rebuild.add_argument(
        "--data-dir", default=".data/sink", help="embedded chDB to rebuild here unless $CLICKHOUSE_URL"
    )
    rebuild.add_argument("--ledger-dir", default=".data/ledger", help="the catalog's PostgreSQL unless $DATABASE_URL")
    rebuild.add_argument("--catalog", default=None, help="scenario file whose subscriptions and metrics to use instead")
    rebuild.set_defaults(run=run_rebuild)


def accepted_records(bootstrap: str, topic: str, timeout_s: float = 30.0) -> Iterator[tuple[UsageRecord, str]]:
    """Every committed record of ``topic`` up to each partition's end when called, with where it is."""
    from confluent_kafka import KafkaException, TopicPartition

    from rating.errors import InvalidValue
    from streams.kafka import messages
    from streams.kafka.consumers import read_ranges, topic_reader
    from streams.kafka.topics import BROKER_WAIT_S, BrokerUnavailable

    consumer = topic_reader(bootstrap, "billing-rebuild-usage")
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=BROKER_WAIT_S).topics[topic]
        except KafkaException as unreachable:
            reason = unreachable.args[0].str()
            raise BrokerUnavailable(
                f"no Kafka broker answered at {bootstrap} within {BROKER_WAIT_S:g}s ({reason})"
            ) from None
        if metadata.error is not None:
            raise InvalidValue("--topic-prefix", f"no topic {topic} at {bootstrap} ({metadata.error.str()})")
        ranges = {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in metadata.partitions
        }
        for message in read_ranges(consumer, ranges, timeout_s):
            value = message.value()
            if value is not None:  # a batch of a worker's chunk, or one record of an older worker
                where = f"{topic}[{message.partition()}]@{message.offset()}"
                for record in messages.read_records(value):
                    yield record, where
    finally:
        consumer.close()


def ledger_catalog(ledger_dir: Path) -> Any:
    """A ``Catalog`` that looks subscriptions and tenants' metrics up in the ledger, once each."""
    from functools import cache

    from sqlalchemy import create_engine

    from billing.database import ledger_url
    from invoicing.ledger.postgres import PostgresLedger
    from rating.catalog import Metric
    from rating.periods import epoch_ms
    from streams.operators.process import Catalog
    from streams.operators.validate import SubscriptionRef

    ledger = PostgresLedger(create_engine(ledger_url(ledger_dir)))

    @cache
    def subscription_of(subscription_id: str) -> SubscriptionRef | None:
        with ledger.session() as session:
            record = session.get_subscription(subscription_id)
        if record is None:
            return None
        s = record.subscription
        return SubscriptionRef(s.id, s.tenant_id, s.timezone, epoch_ms(s.start_at))

    @cache
    def metrics_of(tenant_id: str) -> dict[str, Metric]:
        with ledger.session() as session:
            terms = session.get_terms(tenant_id)
        return {} if terms is None else dict(terms.terms.metrics)

    return Catalog(lambda code: None, subscription_of, lambda tenant, code: metrics_of(tenant).get(code))


def run_rebuild(args: argparse.Namespace) -> int:
    from billing.stores import open_usage_store
    from billing.streaming import bootstrap_servers, catalog_of
    from streams.kafka.topics import USAGE_ACCEPTED
    from streams.store.rebuild import UsageRebuild

    if args.catalog:
        from billing.simulate.scenario_file import load_scenario

        catalog = catalog_of(load_scenario(Path(args.catalog)))
    else:
        catalog = ledger_catalog(Path(args.ledger_dir))
    store = open_usage_store(Path(args.data_dir))
    topic = args.topic_prefix + USAGE_ACCEPTED
    stats = UsageRebuild(catalog, store).run(accepted_records(bootstrap_servers(args.bootstrap), topic))
    json.dump({"records": stats.records, "repeated": stats.repeated, "windows": stats.windows}, sys.stdout)
    sys.stdout.write("\n")
    return 0
