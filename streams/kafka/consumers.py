"""What the pipeline's Kafka consumers share: their settings, by role, and the batch loop.

Two roles:

* a group member (:func:`group_consumer`) subscribes and gets its partitions from its group; it
  commits offsets itself, only once a batch's work is done (never automatically), and a group
  without committed offsets starts at the earliest record, so nothing produced before is skipped;
* a topic reader (:func:`topic_reader`) is assigned its partitions by its owner and never joins
  its group (librdkafka wants a ``group.id`` all the same) nor commits; it reads committed records
  only (``read_committed``) and is told when it reaches the end of a partition.

A service that consumes in batches has ``run_once`` and ``close``; :func:`run_until_stopped` is
the loop around them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

GROUP_MEMBER: Final[Mapping[str, Any]] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 10_000,
}
TOPIC_READER: Final[Mapping[str, Any]] = {
    "enable.auto.commit": False,
    "isolation.level": "read_committed",
    "enable.partition.eof": True,
}


def group_consumer(bootstrap_servers: str, group_id: str, settings: Mapping[str, Any] | None = None) -> Consumer:
    """A member of ``group_id`` that commits its offsets itself; ``settings`` add to or replace the role's."""
    return Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group_id, **GROUP_MEMBER, **(settings or {})})


def topic_reader(bootstrap_servers: str, group_id: str, settings: Mapping[str, Any] | None = None) -> Consumer:
    """A consumer of assigned partitions that commits nothing; ``settings`` add to or replace the role's."""
    return Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group_id, **TOPIC_READER, **(settings or {})})


def record_messages(batch: Sequence[Message]) -> list[Message]:
    """The messages of ``batch`` that are records: an end of partition is left out, any other
    error raised."""
    kept = []
    for message in batch:
        error = message.error()
        if error is None:
            kept.append(message)
        elif error.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(error)
    return kept


class BatchService(Protocol):
    def run_once(self) -> object:
        """Consume one batch and see it through."""
        ...

    def close(self) -> None: ...


def run_until_stopped(service: BatchService, should_stop: Callable[[], bool]) -> None:
    """Batch after batch until ``should_stop()`` says so between two; the service is closed
    however the loop ends."""
    try:
        while not should_stop():
            service.run_once()
    finally:
        service.close()
