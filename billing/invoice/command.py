"""``billing invoicer``: the invoice worker wired to Kafka and the ledger (DATABASE_URL, else the
embedded PostgreSQL under ``--data-dir``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from billing.streaming import bootstrap_servers, logging_setup, stop_on_signals


def run_invoicer(args: Any) -> int:
    from sqlalchemy import create_engine

    from billing.clock import wall_ms
    from billing.database import ledger_url
    from billing.dlq_retention import dlq_retention_ms
    from billing.invoice.worker import InvoiceWorker, InvoiceWorkerSettings
    from invoicing.ledger.postgres import PostgresLedger, migrate
    from streams.kafka.topics import RATING_DLQ, RATING_RESULTS, ensure_topics
    from streams.metrics import serve

    logging_setup(args.log_level)
    bootstrap = bootstrap_servers(args.bootstrap)
    prefix = args.topic_prefix
    topics = [prefix + RATING_RESULTS, prefix + RATING_DLQ]
    ensure_topics(bootstrap, args.partitions, topics=topics, dlq_retention_ms=dlq_retention_ms())
    url = ledger_url(Path(args.data_dir))
    migrate(url)
    engine = create_engine(url, pool_pre_ping=True)
    settings = InvoiceWorkerSettings(
        bootstrap,
        group_id=prefix + "billing-invoicer",
        topic=prefix + RATING_RESULTS,
        batch_max=args.batch_max,
        metrics_port=args.metrics_port,
    )
    worker = InvoiceWorker(settings, PostgresLedger(engine), now_ms=wall_ms)
    if settings.metrics_port:
        serve(worker.metrics.registry, settings.metrics_port, args.metrics_host)
    should_stop = stop_on_signals()
    try:
        worker.run(should_stop)
    finally:
        engine.dispose()
    return 0
