"""What the pipeline's Kafka consumers share: their settings, by role, and the batch loop.

Two roles:

* a group member (:func:`group_consumer`) subscribes and gets its partitions from its group; it
  commits offsets itself, only once a batch's work is done (never automatically), and a group
  without committed offsets starts at the earliest record, so nothing produced before is skipped;
* a topic reader (:func:`topic_reader`) is assigned its partitions by its owner and never joins
  its group (librdkafka wants a ``group.id`` all the same) nor commits; it reads committed records
  only (``read_committed``) and is told when it reaches the end of a partition.

A service that consumes in batches has ``run_once`` and ``close``; :func:`run_until_stopped` is
the loop around them. :func:`read_ranges` reads fixed offset ranges with a topic reader (a gap the
worker must fill, a topic to rebuild from, a test's look at what was committed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.kafka.security import client_config

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
READ_WAIT_S: Final = 0.2
"""The longest :func:`read_ranges` waits in one ``consume()``: what has arrived is taken then."""


def group_consumer(bootstrap_servers: str, group_id: str, settings: Mapping[str, Any] | None = None) -> Consumer:
    """A member of ``group_id`` that commits its offsets itself; ``settings`` add to or replace the role's."""
    return Consumer(client_config(bootstrap_servers, {"group.id": group_id}, GROUP_MEMBER, settings or {}))


def topic_reader(bootstrap_servers: str, group_id: str, settings: Mapping[str, Any] | None = None) -> Consumer:
    """A consumer of assigned partitions that commits nothing; ``settings`` add to or replace the role's."""
    return Consumer(client_config(bootstrap_servers, {"group.id": group_id}, TOPIC_READER, settings or {}))


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


def read_ranges(
    consumer: Consumer, ranges: Mapping[tuple[str, int], tuple[int, int]], timeout_s: float = 30.0
) -> Iterator[Message]:
    """The committed records of each (topic, partition) at offsets ``[start, end)``, in offset
    order within a partition, read with ``consumer`` (a topic reader, which this assigns).

    A partition is done when a record at or past its end arrives or the reader reaches the end
    of what is committed there (the rest of the range, if any, is transaction markers or aborted
    records). Raises TimeoutError when nothing arrives for ``timeout_s`` before every range is
    read (a broker gone away), rather than waiting forever."""
    pending = {where: end for where, (start, end) in ranges.items() if end > start}
    consumer.assign([TopicPartition(topic, partition, ranges[(topic, partition)][0]) for topic, partition in pending])
    heard = time.monotonic()
    while pending:
        # consume() returns early only once it has num_messages: asked for its whole timeout, a
        # range of a few records took all of it (30 s per partition a worker restores)
        batch = consumer.consume(num_messages=10_000, timeout=min(timeout_s, READ_WAIT_S))
        if not batch:
            if time.monotonic() - heard >= timeout_s:
                raise TimeoutError(f"{sorted(pending)} did not reach their end offsets within {timeout_s:g}s")
            continue
        heard = time.monotonic()
        for message in batch:
            where = (message.topic() or "", message.partition() or 0)
            end = pending.get(where)
            if end is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                del pending[where]
                continue
            offset = message.offset() or 0
            if offset >= end:
                del pending[where]
                continue
            yield message
            if offset + 1 >= end:
                del pending[where]


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
