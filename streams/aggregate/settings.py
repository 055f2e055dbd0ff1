"""What the usage worker is told: its cluster, state store, batch and transaction sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.kafka.security import client_config


@dataclass(frozen=True)
class WorkerSettings:
    bootstrap_servers: str
    partitions: int
    app_id: str = "billing-usage"
    store: str = "memory"
    """``rocksdb``: each partition's state is also kept on local disk under ``data_dir`` (a restart
    reads only the changelog's tail); ``memory``: restored from the changelog on every start."""
    data_dir: str = ".data/worker"
    batch_max: int = 2000
    batch_within_s: float = 0.05
    commit_events: int = 5000
    """Events per transaction, about: a batch of batched messages (2,000 × 100 events) becomes many
    transactions committed while the next ones are processed, so the sink starts at once."""
    commit_interval_s: float = 1.0
    session_timeout_s: float = 10.0
    dedup_retention_ms: int = 40 * 86_400_000
    """Dedup entries older than this (by event time) are purged: a period is closed and
    invoiced long before; a later copy of such an event is late usage, handled downstream."""
    purge_interval_s: float = 600.0
    metrics_port: int | None = None
    group_instance_id: str | None = None
    topic_prefix: str = ""
    """Prepended to every topic name (``usage.events`` …): separate pipelines on one cluster."""
    catalog_refresh_s: float = 1.0
    """How often new catalog records are applied while the worker runs (with catalog topics);
    exactness does not rest on it: an unknown subscription or metric triggers a catch-up first."""

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    @property
    def kafka(self) -> dict[str, Any]:
        return client_config(self.bootstrap_servers)
