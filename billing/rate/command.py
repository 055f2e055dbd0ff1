"""``billing rater``: its command line, wiring the rater to Kafka, the usage store and the ledger."""

from __future__ import annotations

import logging
from typing import Any

from billing.clock import Clock
from billing.rate.rater import Rater
from billing.rate.settings import RaterSettings

log = logging.getLogger("billing.rater")


def add_rater_command(commands: Any) -> None:
    rater = commands.add_parser(
        "rater", help="the billing calendar on the wall clock: catalog topics + usage → rating.results"
    )
    rater.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    rater.add_argument(
        "--data-dir",
        default=None,
        help="embedded stores' directory: chDB (unless $CLICKHOUSE_URL) and, without --ledger-dir, PostgreSQL "
        "(unless $DATABASE_URL) (default: .data/sink for chDB, as billing sink, and .data/ledger for PostgreSQL)",
    )
    rater.add_argument(
        "--ledger-dir", default=None, help="embedded PostgreSQL here unless $DATABASE_URL (default: --data-dir)"
    )
    rater.add_argument("--topic-prefix", default="", help="prefix of every topic name (separate pipelines)")
    rater.add_argument("--usage-group", default=None, help="the usage worker's --app-id (prefix + billing-usage)")
    rater.add_argument("--grace-period", default="0s", help="how long after its end a period is invoiced (e.g. 1h)")
    rater.add_argument("--partitions", type=int, default=6, help="partitions of the topics it creates")
    rater.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="serve RatingService (running results) here; calls need a key of billing apikey",
    )
    rater.add_argument("--clock-file", default=None, help="read 'now' from this file (tests, rehearsals)")
    from billing.streaming import add_metrics_arguments

    add_metrics_arguments(rater)
    rater.add_argument("--log-level", default="info")
    rater.set_defaults(run=run_rater)


def run_rater(args: Any) -> int:
    from pathlib import Path

    from sqlalchemy import create_engine

    from billing.clock import FileClock, SystemClock
    from billing.database import ledger_url
    from billing.simulate.fields import duration
    from billing.stores import open_usage_store
    from billing.streaming import bootstrap_servers, logging_setup, stop_on_signals
    from billing.usage_reader import StoreUsageReader
    from invoicing.ledger.postgres import PostgresLedger, migrate

    logging_setup(args.log_level)
    settings = RaterSettings(
        bootstrap_servers(args.bootstrap),
        topic_prefix=args.topic_prefix,
        usage_group=args.usage_group or args.topic_prefix + "billing-usage",
        grace_period=duration(args.grace_period, "--grace-period"),
        partitions=args.partitions,
    )
    url = ledger_url(Path(args.ledger_dir or args.data_dir or ".data/ledger"))
    migrate(url)
    engine = create_engine(url, pool_pre_ping=True)
    store = open_usage_store(Path(args.data_dir or ".data/sink"))
    clock: Clock = FileClock(args.clock_file) if args.clock_file else SystemClock()
    rater = Rater(settings, store, StoreUsageReader(store), PostgresLedger(engine), clock)
    server = None
    if args.grpc_port is not None:
        from billing.api.rating_service import RatingServer

        cycles = rater.calendar.cycles

        # RateSubscription (any period, read from the store) stays UNIMPLEMENTED here: the store's
        # client belongs to the loop's thread; GetCurrentRating reads only the agent's results.
        from billing.api.keys import authenticate
        from invoicing.ledger.api_keys import PostgresApiKeys

        keys = PostgresApiKeys(engine)
        server = RatingServer(
            rater.agent.current.get,
            tenant_of=lambda s: cycles[s].subscription.tenant_id if s in cycles else "",
            authenticate=lambda key: authenticate(keys, key),  # billing apikey's keys, as billing serve
        )
        port = server.start(args.grpc_port)
        log.info("RatingService on port %d", port)
    if args.metrics_port:
        from streams.metrics import serve

        serve(rater.metrics.registry, args.metrics_port, args.metrics_host)
    should_stop = stop_on_signals()
    try:
        rater.run(should_stop)
    finally:
        if server is not None:
            server.stop()
        engine.dispose()
    return 0
