"""The session's Kafka broker: ``KAFKA_BOOTSTRAP_SERVERS`` when set (an existing cluster), else a
real single-node broker started by ops/kafka.py in a temporary directory (jars cached).

Use it from conftest.py with ``from tests.kafka_fixtures import kafka_broker``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams.kafka.consumers import read_ranges, topic_reader

_spec = importlib.util.spec_from_file_location("ops_kafka", Path(__file__).resolve().parents[1] / "ops" / "kafka.py")
assert _spec is not None and _spec.loader is not None
ops_kafka = sys.modules.setdefault("ops_kafka", importlib.util.module_from_spec(_spec))
if not hasattr(ops_kafka, "KafkaBroker"):
    _spec.loader.exec_module(ops_kafka)  # ops/kafka.py: standard library only, not a package


@dataclass(frozen=True)
class Broker:
    """Where the session's broker answers; ``started_in`` is 0 for an existing cluster."""

    bootstrap: str
    started_in: float = 0.0

    def new_topic(self, prefix: str = "test", partitions: int = 1) -> str:
        """A fresh topic (unique name) created with AdminClient and ready for producers."""
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})  # alive until the futures resolve
        for future in admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30).values():
            future.result()
        return name


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield Broker(existing)
        return
    started = time.monotonic()
    broker = ops_kafka.KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
    try:
        yield Broker(broker.bootstrap, time.monotonic() - started)
    finally:
        broker.stop(timeout=10)


def read_committed(bootstrap: str, topics: Sequence[str], timeout_s: float = 30.0) -> Iterator[Any]:
    """Every committed record of ``topics`` from the beginning to their current end (read_committed)."""
    consumer = topic_reader(bootstrap, "outbox-reader")
    try:
        metadata = consumer.list_topics(timeout=timeout_s).topics
        ranges = {
            (name, p): consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)
            for name in topics
            for p in metadata[name].partitions
        }
        yield from read_ranges(consumer, ranges, timeout_s)
    finally:
        consumer.close()


@dataclass(frozen=True)
class SecureBroker:
    """A locked-down broker of ops/kafka.py (``start --secure``): SASL/SCRAM-SHA-512 over TLS, the
    StandardAuthorizer, one principal per role with the ACLs of streams/kafka/acls.py, and the
    pipeline's topics created by its admin."""

    broker: Any  # ops_kafka.KafkaBroker

    @property
    def bootstrap(self) -> str:
        return str(self.broker.bootstrap)

    def config(self, user: str | None = "admin", password: str | None = None, **more: Any) -> dict[str, Any]:
        """confluent-kafka settings as ``user`` (None: no credentials; ``password``: a wrong one)."""
        return {**self.broker.client_config(user, password), **more}

    def env(self, user: str) -> dict[str, str]:
        """The ``KAFKA_*`` variables of a client connecting as ``user`` (the password by its file)."""
        return dict(self.broker.client_env(user))


SECURE_PREFIXES = ("", "loop.")
"""The pipelines the secure broker has topics and ACLs for: the tests that probe the ACLs write
junk into the first, the loop runs on the second."""


def start_secure_broker(directory: Path, security: str = "sasl_ssl", partitions: int = 2) -> Any:
    """A started, locked-down ops/kafka.py broker in ``directory``; the caller stops it."""
    broker = ops_kafka.KafkaBroker(directory, security=security).start()
    try:
        for prefix in SECURE_PREFIXES:
            broker.lock_down(partitions, prefix)
    except BaseException:
        broker.stop(timeout=10)
        raise
    return broker


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker of its own per test module (the ACLs and principals are the cluster's), about 15 s."""
    broker = start_secure_broker(tmp_path_factory.mktemp("secure-kafka"))
    try:
        yield SecureBroker(broker)
    finally:
        broker.stop(timeout=10)
