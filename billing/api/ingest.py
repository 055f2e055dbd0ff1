"""``IngestUsage``'s port: a batch of usage events checked whole, then sent to Kafka and
acknowledged by every in-sync replica (acks=all) before the call answers. The Kafka side lives in
``billing/api_kafka.py`` (the SDK's producer), outside this package: the servicers import no Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

NO_BROKER = (
    "no Kafka broker: start one with `python3.11 ops/kafka.py start` (or point KAFKA_BOOTSTRAP_SERVERS at one) "
    "and restart billing serve"
)


class BrokerUnavailable(RuntimeError):
    """Kafka did not take the events (unreachable, no topic, not acknowledged in time). Some may
    have been written: a retry with the same idempotency keys counts each once."""


@dataclass(frozen=True, slots=True)
class UsageInput:
    """One event of a request, and the request field it came from (``records[3]``)."""

    field: str
    tenant_id: str
    subscription_id: str
    metric_code: str
    value: Decimal
    recorded_at: datetime
    idempotency_key: str
    metadata: Mapping[str, str]
    event_id: str | None


class UsageRecorder(Protocol):
    def record(self, events: Sequence[UsageInput]) -> int:
        """Check every event (InvalidValue naming ``<field>.<name>``), then send them all and wait
        for acks=all; the events sent. BrokerUnavailable when Kafka did not take them."""
        ...
