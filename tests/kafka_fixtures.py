"""The session's Kafka broker: ``KAFKA_BOOTSTRAP_SERVERS`` when set (an existing cluster), else a
real single-node broker started by ops/kafka.py in a temporary directory (jars cached)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("ops_kafka", Path(__file__).resolve().parents[1] / "ops" / "kafka.py")
assert _spec is not None and _spec.loader is not None
ops_kafka = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ops_kafka)  # ops/kafka.py: standard library only, not a package


@dataclass(frozen=True)
class Broker:
    bootstrap: str


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield Broker(existing)
        return
    broker = ops_kafka.KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
    yield Broker(broker.bootstrap)
    broker.stop(timeout=5)  # a throwaway broker: no need to wait for a clean shutdown
