"""``billing relay``: the outbox relay (billing/publish/relay.py) on the ledger's PostgreSQL
(``DATABASE_URL``, else the embedded server under ``--data-dir``) and a Kafka cluster."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from billing.streaming import bootstrap_servers, logging_setup
from streams.metrics import add_metrics_arguments


def add_relay_command(commands: Any) -> None:
    relay = commands.add_parser("relay", help="publish the ledger's outbox to Kafka, every committed row exactly once")
    relay.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    relay.add_argument("--data-dir", default=".data/ledger", help="embedded PostgreSQL lives here unless $DATABASE_URL")
    relay.add_argument(
        "--transactional-id",
        default=None,
        help="fixed per relay deployment: a restart fences the old instance (default billing-outbox-relay)",
    )
    relay.add_argument("--progress-topic", default=None, help="compacted topic of committed progress (outbox.progress)")
    relay.add_argument("--topic-prefix", default="", help="prefix of the outbox topics (and default id/progress topic)")
    relay.add_argument("--partitions", type=int, default=6, help="partitions of the outbox topics it creates")
    relay.add_argument("--batch", type=int, default=1000, help="rows per Kafka transaction")
    relay.add_argument("--poll-interval", type=float, default=0.2, help="seconds between polls when idle")
    relay.add_argument("--once", action="store_true", help="publish what is pending, print a summary and exit")
    add_metrics_arguments(relay)
    relay.add_argument("--log-level", default="info")
    relay.set_defaults(run=run_relay)


def run_relay(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from billing.database import ledger_url
    from billing.publish.relay import DEFAULT_TRANSACTIONAL_ID, OutboxRelay, ProgressTopicShared, RelaySettings
    from invoicing.ledger.postgres import migrate
    from streams.kafka.topics import OUTBOX_PROGRESS

    logging_setup(args.log_level)
    # billing.database, not billing.stores: no ClickHouse client to import (a second of start-up
    # that a standby taking over should not wait for)
    url = ledger_url(Path(args.data_dir))
    migrate(url)
    engine = create_engine(url, pool_pre_ping=True)
    settings = RelaySettings(
        bootstrap_servers(args.bootstrap),
        transactional_id=args.transactional_id or args.topic_prefix + DEFAULT_TRANSACTIONAL_ID,
        progress_topic=args.progress_topic or args.topic_prefix + OUTBOX_PROGRESS,
        topic_prefix=args.topic_prefix,
        batch_size=args.batch,
        poll_interval_s=args.poll_interval,
        partitions=args.partitions,
    )
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    relay = OutboxRelay(engine, settings)
    if args.metrics_port:
        from streams.metrics import serve

        serve(relay.metrics.registry, args.metrics_port, args.metrics_host)
    try:
        stats = relay.run(stop, until_idle=args.once)
    except ProgressTopicShared as error:
        print(f"error: {error}; give each --transactional-id its own --progress-topic", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if args.once:
        json.dump({"published": stats.published, "batches": stats.batches, "recovered": stats.recovered}, sys.stdout)
        sys.stdout.write("\n")
    return 0
