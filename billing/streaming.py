"""``billing worker`` and ``billing sink``: the Kafka drivers wired to a catalog, a clock and stores.

The worker holds the catalog from the compacted ``catalog.terms`` and ``catalog.subscriptions``
topics the ledger's outbox relay writes (streams/kafka/catalog_tables.py). ``--catalog FILE``
replaces them with a scenario file's metrics and subscriptions (design section 5; its plans,
events and actions are ignored): offline runs, tests and ``billing simulate --via kafka``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from billing.clock import Clock, FileClock, SystemClock, wall_ms
from billing.simulate.scenario import Scenario
from billing.simulate.scenario_file import load_scenario
from rating.periods import epoch_ms
from streams.operators.process import Catalog
from streams.operators.validate import SubscriptionRef

DEFAULT_BOOTSTRAP = "localhost:9092"


def bootstrap_servers(given: str | None) -> str:
    return given or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP


def catalog_of(scenario: Scenario) -> Catalog:
    metrics = {metric.code: metric for metric in scenario.metrics}
    subscriptions = {
        sub.id: SubscriptionRef(sub.id, scenario.tenant_id, sub.timezone, epoch_ms(sub.start_at))
        for sub in scenario.subscriptions
    }
    return Catalog(metrics.get, subscriptions.get)


def stop_on_signals() -> Callable[[], bool]:
    """SIGTERM and SIGINT ask a consuming loop to stop after its current batch (whose offsets it
    commits), instead of dying in the middle of it."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return lambda: stopping


class JsonLines(logging.Formatter):
    """One JSON object per line (at, level, logger, message, and the traceback if any): what log
    shippers parse. Built with json.dumps, never by formatting a template: a message with quotes
    or newlines stays one valid line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "at": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def logging_setup(level: str) -> None:
    """Log JSON lines to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    from streams.kafka.security import from_env

    security = from_env()  # incomplete settings stop the command here, naming the variable
    if security.protocol != "PLAINTEXT":
        logging.getLogger("billing.kafka").info("kafka: %s", security.describe())  # whom it connects as


def tune_gc() -> None:
    """For a long-running stream process or a run of many events (demo, simulate), after
    start-up: what is loaded by now (modules, the catalog) is never scanned again, and a young
    collection waits for 50,000 new objects instead of 700. Each batch makes and drops hundreds of
    thousands of small objects (decoded records, rows); with the defaults the collector's full
    passes took a quarter of the sink's CPU (py-spy, bench/kafka_pipeline.py) and a third of
    bench/pipeline.py. Reference cycles are still collected, only less often."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def run_worker(args: Any) -> int:
    import faust

    from invoicing.ledger.catalog import CATALOG_SUBSCRIPTIONS, CATALOG_TERMS
    from streams.aggregate.app import create_app
    from streams.aggregate.settings import WorkerSettings
    from streams.kafka.catalog_tables import CatalogTables
    from streams.metrics import serve

    settings = WorkerSettings(
        bootstrap_servers=bootstrap_servers(args.bootstrap),
        partitions=args.partitions,
        store=args.store,
        data_dir=args.data_dir,
        batch_max=args.batch_max,
        dedup_retention_ms=args.retention_days * 86_400_000,
        metrics_port=args.metrics_port,
        group_instance_id=args.instance_id,
        app_id=args.app_id,
        commit_interval_s=args.commit_interval,
        topic_prefix=args.topic_prefix,
        catalog_refresh_s=getattr(args, "catalog_refresh", None) or 1.0,
        purge_interval_s=getattr(args, "purge_interval", 600.0),
    )
    clock: Clock = FileClock(args.clock_file) if getattr(args, "clock_file", None) else SystemClock()
    from billing.dlq_retention import dlq_retention_ms
    from streams.kafka.dlq import admin_client
    from streams.kafka.topics import (
        USAGE_ACCEPTED,
        USAGE_DLQ,
        USAGE_EVENTS,
        USAGE_WINDOWS,
        ensure_topics,
    )

    admin, _ = admin_client(settings.bootstrap_servers, 10.0)  # quiet and quick when none answers
    own = [settings.topic(t) for t in (USAGE_EVENTS, USAGE_DLQ, USAGE_ACCEPTED, USAGE_WINDOWS)]
    ensure_topics(admin, settings.partitions, topics=own, dlq_retention_ms=dlq_retention_ms())
    tables = None
    if args.catalog:
        catalog = catalog_of(load_scenario(Path(args.catalog)))
    else:
        tables = CatalogTables(
            settings.bootstrap_servers,
            settings.topic(CATALOG_SUBSCRIPTIONS),
            settings.topic(CATALOG_TERMS),
            create_partitions=settings.partitions,
        )
        tables.catch_up()  # the whole catalog before the first event
        catalog = tables.catalog()
        logging.getLogger("billing.worker").warning(
            "catalog from %s and %s: %d subscriptions, %d tenants' metrics",
            tables.subscriptions_topic,
            tables.terms_topic,
            len(tables.subscriptions),
            len(tables.metrics),
        )
    # Faust makes only the last level of its data directory: usage-N under --role all's worker/
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app, worker = create_app(settings, catalog, lambda: epoch_ms(clock.now()), tables)
    if settings.metrics_port:
        serve(worker.metrics.registry, settings.metrics_port, args.metrics_host)
    runner = faust.Worker(app, loglevel=args.log_level, quiet=True)
    # Faust's terminal spinner (kept at WARNING and above) sets the root logger to DEBUG so it can
    # spin on every record: every debug call in Faust and aiokafka then builds a LogRecord, about
    # a tenth of the worker's CPU (bench/kafka_pipeline.py profile). No spinner, no debug records.
    runner.spinner = None
    tune_gc()
    runner.execute_from_commandline()
    return 0


def run_sink(args: Any) -> int:
    from billing.stores import open_usage_store
    from streams.metrics import serve
    from streams.store.sink import SinkSettings, UsageSink

    logging_setup(args.log_level)
    settings = SinkSettings(
        bootstrap_servers(args.bootstrap),
        metrics_port=args.metrics_port,
        topic_prefix=args.topic_prefix,
    )
    store = open_usage_store(Path(args.data_dir))
    sink = UsageSink(settings, store, now_ms=wall_ms)
    if settings.metrics_port:
        serve(sink.metrics.registry, settings.metrics_port, args.metrics_host)
    should_stop = stop_on_signals()
    logging.getLogger("billing.sink").info("sink started: %s", settings)
    tune_gc()
    sink.run(should_stop)
    return 0
