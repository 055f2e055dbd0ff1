"""Which partition a subscription's usage lives on: Kafka's default (murmur2) partitioner, so
Java, librdkafka (``partitioner=murmur2_random``) and aiokafka producers all agree, and the
worker can check that an event sits where its subscription's state is."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

PRODUCER_PARTITIONER = "murmur2_random"
"""confluent-kafka's name for the same partitioner (its default, ``consistent_random``, differs)."""


def partition_of(subscription_id: str, partitions: int) -> int:
    digest: int = murmur2(subscription_id.encode())
    return (digest & 0x7FFFFFFF) % partitions
