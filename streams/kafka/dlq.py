"""Reading the dead-letter topics back and re-producing letters' originals (``billing dlq``).

A letter is read with ``messages.read_dead_letter`` and turned into a ``StoredLetter`` at once,
taking only the fields it needs and tolerating missing ones: the letter's shape evolves (an Avro
reader must accept fields added later), so a field this module does not know is kept in ``extra``.

Reading a topic: a plain consumer (no group, nothing committed) assigned every partition from
its start, reading ``read_committed`` until its position passes each partition's high watermark
as of the start (the position moves past transaction markers, which are never delivered).

Replaying: each original goes back, byte for byte, to the pipeline topic its letter came from
(``usage.events``, ``rating.results``) under the same key, through an idempotent ``acks=all``
producer with the murmur2 partitioner of every usage producer (streams/ingest/producer.py), so it
lands on the partition that holds its subscription's state and the worker validates and
deduplicates it as any message: a replay never counts an event twice, and replaying again
changes nothing.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from rating.periods import epoch_ms
from streams.ingest.producer import TUNING, DeliveryError, UnknownTopicError
from streams.kafka import messages
from streams.kafka.consumers import topic_reader
from streams.kafka.security import check_authentication, client_config
from streams.kafka.topics import BrokerUnavailable
from streams.operators.records import UsageEvent

log = logging.getLogger(__name__)
librdkafka_log = logging.getLogger(__name__ + ".librdkafka")
"""librdkafka's own messages (connection refused, retries); silent unless the application logs."""
librdkafka_log.addHandler(logging.NullHandler())

KNOWN_FIELDS: Final = frozenset(
    {
        "reason",
        "detail",
        "original",
        "source_topic",
        "source_partition",
        "source_offset",
        "failed_at",
        "field",
        "original_key",
        "original_truncated",
        "original_size",
        "event_index",
    }
)


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter where it sits (``topic``, ``partition``, ``offset``) and what it says.

    ``subscription_id`` comes from the original's events when they decode, else from its key;
    ``failed_at_ms`` is when the pipeline rejected it (the record's timestamp if the letter
    does not say)."""

    topic: str
    partition: int
    offset: int
    failed_at_ms: int
    reason: str
    detail: str
    field: str | None
    subscription_id: str | None
    source_topic: str
    source_partition: int
    source_offset: int
    original: bytes
    original_key: bytes | None
    original_size: int
    """Bytes of the rejected input; more than ``len(original)`` when the letter carries only its start."""
    event_index: int | None
    """The rejected event's index in its batch message, when the letter says so."""
    extra: Mapping[str, Any]
    """Fields of the letter this module does not know (a newer shape), JSON-ready."""

    @property
    def truncated(self) -> bool:
        """The letter holds only the first bytes of what was rejected: nothing to replay."""
        return self.original_size > len(self.original)

    @property
    def source(self) -> tuple[str, int, int, bytes]:
        """One message rejected several times (an event each) is the same source."""
        return (self.source_topic, self.source_partition, self.source_offset, self.original)


def _ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return epoch_ms(value)
    return int(value) if isinstance(value, int) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1


def _subscription_of(original: bytes, key: bytes | None) -> str | None:
    """The subscription of a usage message (a batch holds one subscription only), else the key."""
    for item in messages.read_usage(original) if original else ():
        if isinstance(item, UsageEvent) and item.subscription_id:
            return item.subscription_id
    return key.decode("utf-8", "replace") if key else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def stored_letter(message: Message) -> StoredLetter:
    """The letter of one record of a dead-letter topic; a record that is not a letter at all is
    kept as one with reason ``unreadable_letter`` (never skipped in silence)."""
    where = (str(message.topic()), int(message.partition() or 0), int(message.offset() or 0))
    record_ms, key = message.timestamp()[1], message.key()
    try:
        raw: dict[str, Any] = messages.read_dead_letter(message.value() or b"")
    except Exception as error:  # the letter itself is bad: show it, never stop the listing
        raw = {"reason": "unreadable_letter", "detail": f"{type(error).__name__}: {error}", "original": b""}
    return letter_of(raw, *where, record_ms, key)


def letter_of(
    raw: Mapping[str, Any], topic: str, partition: int, offset: int, record_ms: int, key: bytes | None
) -> StoredLetter:
    """A ``StoredLetter`` from ``read_dead_letter``'s mapping: a missing field takes a neutral
    value (the record's key and timestamp where they can stand in), an unknown one goes to ``extra``."""
    original = raw.get("original")
    original = original if isinstance(original, bytes) else b""
    original_key = raw.get("original_key", key)
    original_key = original_key if isinstance(original_key, bytes) else None
    failed_at = _ms(raw.get("failed_at"))
    field = raw.get("field")
    size = raw.get("original_size")
    truncated = raw.get("original_truncated") is True
    if not isinstance(size, int) or size < len(original):
        size = len(original) + 1 if truncated else len(original)
    index = raw.get("event_index")
    return StoredLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        failed_at_ms=record_ms if failed_at is None else failed_at,
        reason=_text(raw.get("reason")) or "unknown",
        detail=_text(raw.get("detail")),
        field=field if isinstance(field, str) else None,
        subscription_id=_subscription_of(original, original_key),
        source_topic=_text(raw.get("source_topic")),
        source_partition=_int(raw.get("source_partition")),
        source_offset=_int(raw.get("source_offset")),
        original=original,
        original_key=original_key,
        original_size=size,
        event_index=index if isinstance(index, int) else None,
        extra={name: _json_safe(value) for name, value in raw.items() if name not in KNOWN_FIELDS},
    )


def _client_config(bootstrap_servers: str, timeout_s: float) -> dict[str, Any]:
    return {
        **client_config(bootstrap_servers),
        "logger": librdkafka_log,
        # fail fast on an address where nothing listens, instead of librdkafka's long retries
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
    }


def admin_client(bootstrap_servers: str, timeout_s: float = 5.0) -> tuple[AdminClient, set[str]]:
    """An admin client and the topics that exist; raises BrokerUnavailable."""
    admin = AdminClient(_client_config(bootstrap_servers, timeout_s))
    try:
        topics = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as error:
        check_authentication(admin)
        raise _unavailable(bootstrap_servers, timeout_s, error) from None
    return admin, topics


def _unavailable(bootstrap_servers: str, timeout_s: float, error: KafkaException) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap_servers} within {timeout_s:g}s ({error.args[0].str()})"
    )


def _partitions(client: Consumer | Producer, bootstrap_servers: str, topic: str, timeout_s: float) -> int:
    """How many partitions ``topic`` has; raises BrokerUnavailable or UnknownTopicError."""
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as error:
        check_authentication(client)  # not assigned yet: a poll reads no record
        raise _unavailable(bootstrap_servers, timeout_s, error) from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise UnknownTopicError(f"topic {topic!r} does not exist on {bootstrap_servers}")
    return len(found.partitions)


def read_letters(bootstrap_servers: str, topic: str, *, timeout_s: float = 5.0) -> Iterator[StoredLetter]:
    """Every letter of ``topic`` from its start to its end as of this call, partition by
    partition in offset order within each. Raises BrokerUnavailable, UnknownTopicError, or
    TimeoutError when the reading stalls for ``10 × timeout_s``."""
    consumer = topic_reader(
        bootstrap_servers,
        f"billing-dlq-{uuid.uuid4().hex[:8]}",  # never committed: no group is created
        _client_config(bootstrap_servers, timeout_s),
    )
    try:
        partitions = _partitions(consumer, bootstrap_servers, topic, timeout_s)
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s, cached=False)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        if not starts:
            return
        consumer.assign(starts)
        positions = {p: -1 for p in ends}
        stall = 10 * timeout_s
        deadline = time.monotonic() + stall
        while any(positions[p] < end for p, end in ends.items()):
            batch = consumer.consume(500, timeout=0.2)
            for message in batch:
                partition, offset = int(message.partition() or 0), int(message.offset() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        positions[partition] = max(positions[partition], offset)
                        continue
                    raise KafkaException(error)
                positions[partition] = max(positions[partition], offset + 1)
                if offset < ends[partition]:
                    yield stored_letter(message)
            if batch:
                deadline = time.monotonic() + stall
            else:
                # transaction markers and aborted records move the position without a message
                for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                    if tp.offset >= 0:
                        positions[tp.partition] = max(positions[tp.partition], tp.offset)
                if time.monotonic() > deadline:
                    behind = {p: (positions[p], end) for p, end in ends.items() if positions[p] < end}
                    raise TimeoutError(f"{topic} not read to its end in {stall:g}s (position, end): {behind}")
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Replay:
    """One original to re-produce: its bytes, its key, and where."""

    topic: str
    key: bytes | None
    value: bytes


def replay_key(letter: StoredLetter) -> bytes | None:
    """The key to replay ``letter``'s original under: its own, else its subscription's (the
    pipeline's key), so a message rejected for lacking one arrives keyed after a replay."""
    if letter.original_key:
        return letter.original_key
    return letter.subscription_id.encode() if letter.subscription_id else None


def produce_replays(
    bootstrap_servers: str, replays: Sequence[Replay], *, timeout_s: float = 5.0, flush_s: float = 60.0
) -> int:
    """Produce every replay and wait for each acknowledgement; returns how many were delivered.
    Raises BrokerUnavailable, UnknownTopicError (before producing anything), or DeliveryError."""
    producer = Producer({**_client_config(bootstrap_servers, timeout_s), **TUNING})
    for topic in sorted({r.topic for r in replays}):
        _partitions(producer, bootstrap_servers, topic, timeout_s)
    errors: list[KafkaError] = []
    delivered = 0

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1
        else:
            errors.append(error)

    for replay in replays:
        while True:
            try:
                producer.produce(replay.topic, value=replay.value, key=replay.key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    unconfirmed = producer.flush(flush_s)
    if errors or unconfirmed:
        last = ", ".join(str(e) for e in errors[-3:])
        raise DeliveryError(
            f"{len(errors)} replays failed, {unconfirmed} unconfirmed after {flush_s:g}s"
            + (f" (last errors: {last})" if last else ""),
            len(errors),
            unconfirmed,
        )
    log.info("replayed %d messages", delivered)
    return delivered
