"""The Faust app of the usage worker: its one agent on ``usage.events``, the lag and catalog timers,
and the revocation hook; the batch step itself is ``UsageWorker`` (worker.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust

from streams.aggregate.settings import WorkerSettings
from streams.aggregate.usage_state import ensure_state_topic
from streams.aggregate.worker import UsageWorker
from streams.kafka.catalog_tables import CatalogTables
from streams.kafka.security import from_env
from streams.kafka.topics import USAGE_EVENTS
from streams.metrics import WorkerMetrics
from streams.operators.process import Catalog

log = logging.getLogger("billing.worker")


def create_app(
    settings: WorkerSettings,
    catalog: Catalog,
    now_ms: Callable[[], int],
    catalog_tables: CatalogTables | None = None,
) -> tuple[faust.App, UsageWorker]:
    """The Faust app with its one agent (concurrency 1: faust issue 606); with ``catalog_tables``
    (already caught up), a timer applies new catalog records as they come."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.group_instance_id,
        producer_acks=-1,
        producer_linger_ms=5,
        web_enabled=False,
        table_standby_replicas=0,
        **from_env().faust(),
    )
    worker = UsageWorker(app, settings, catalog, now_ms, WorkerMetrics(), catalog_tables)
    ensure_state_topic(settings.bootstrap_servers, worker.state_topic, settings.partitions)

    @app.agent(worker.source, concurrency=1)
    async def usage(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            await worker.process(events)

    async def lag() -> None:
        worker.report_lag()

    app.timer(interval=5.0)(lag)

    if catalog_tables is not None:
        tables = catalog_tables

        async def refresh_catalog() -> None:
            applied = tables.refresh()
            if applied:
                log.info("catalog: %d new records", applied)

        app.timer(interval=settings.catalog_refresh_s)(refresh_catalog)

    source = settings.topic(USAGE_EVENTS)

    async def on_revoked(sender: Any, revoked: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await worker.on_revoked(tp.partition for tp in revoked if tp.topic == source)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    return app, worker
