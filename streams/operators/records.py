"""Usage values as the operators see them: the wire event, the validated record, the rejection."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from rating.aggregations import Point


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """A usage event as decoded from the wire (``UsageEvent`` Avro contract); not yet trusted."""

    id: str
    tenant_id: str
    subscription_id: str
    metric_code: str
    value: float
    recorded_at_ms: int
    idempotency_key: str
    metadata: Mapping[str, str] = field(default_factory=dict)


class UsageRecord(NamedTuple):
    """A valid usage event (``UsageRecord``): exact value, known metric and subscription.
    A NamedTuple: one is built per event on the hot path."""

    event_id: str
    tenant_id: str
    subscription_id: str
    metric_code: str
    value: Decimal
    recorded_at_ms: int
    idempotency_key: str
    metadata: Mapping[str, str]
    unique: str | None = None

    @property
    def fingerprint(self) -> str:
        """Digest of the payload: equal for a duplicate, different for an idempotency conflict."""
        text = f"{self.tenant_id}\x1d{self.metric_code}\x1d{self.value}\x1d{self.recorded_at_ms}"
        if self.metadata:
            text += "\x1d" + "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(self.metadata.items()))
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    @property
    def point(self) -> Point:
        return Point(self.recorded_at_ms, self.idempotency_key, self.value, self.unique)


class Reason(StrEnum):
    """Why an event went to the dead-letter topic."""

    UNDECODABLE = "undecodable"
    MISSING_FIELD = "missing_field"
    MISSING_IDEMPOTENCY_KEY = "missing_idempotency_key"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    TENANT_MISMATCH = "tenant_mismatch"
    INVALID_VALUE = "invalid_value"
    INVALID_TEXT = "invalid_text"
    """An id, code, key or the metadata beyond its limits (length, entries) or with control
    characters (rating/limits.py, docs/semantics.md)."""
    NEGATIVE_VALUE = "negative_value"
    FUTURE_TIMESTAMP = "future_timestamp"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    BEYOND_RETENTION = "beyond_retention"
    """On Kafka: older than the dedup retention, so a duplicate could no longer be recognised."""
    WRONG_PARTITION = "wrong_partition"
    """On Kafka: the event's subscription belongs to another partition, where its state is."""
    OUTSIDE_SUBSCRIPTION = "outside_subscription"
    """Recorded before its subscription started: no period of it can ever bill the event."""
    BATCH_TOO_LARGE = "batch_too_large"
    """On Kafka: a message carrying more events than the worker can position; dead-lettered whole."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event the pipeline will not count, with the reason and the field at fault."""

    reason: Reason
    detail: str
    field: str | None = None
    subscription_id: str | None = None
    idempotency_key: str | None = None
