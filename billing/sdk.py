"""A small Python SDK for recording usage:

    with BillingClient("localhost:9092") as billing:
        billing.record_usage("t1", "sub_1", "api_calls", Decimal(3), at, idempotency_key="req-81f2")

The idempotency key is required, and the SDK never makes one up. It is what makes a retry count
once, and a retry is usually the caller's: a request handler that runs again, a job restarted after
a crash. Only the caller can give the second attempt the key of the first (a request id, a job id
and line number...); a key generated here — random per call, or derived from the values, which
would merge two genuinely equal events — would turn every such retry into double billing.

Values are Decimal or int, never float, so what is recorded is what was meant; on the wire they
travel as the contract's double (design section 3), so the SDK also refuses values a double cannot
carry exactly, and those the pipeline would reject anyway (not finite, more than 12 decimals), as
it refuses ids, codes, keys and metadata beyond their limits (rating/limits.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import TracebackType

from rating import numbers
from rating.errors import InvalidValue
from rating.limits import MAX_CODE, MAX_KEY, bounded_metadata, bounded_text
from rating.periods import epoch_ms
from streams.ingest.producer import DeliveryError, UsageProducer
from streams.kafka.topics import USAGE_EVENTS
from streams.operators.records import UsageEvent

__all__ = ["BillingClient", "DeliveryError", "InvalidValue", "usage_event"]


def exact_double(value: object, field: str = "value") -> float:
    """``value`` (a Decimal or an int) as the double that carries it exactly, or InvalidValue."""
    if isinstance(value, float):
        raise InvalidValue(field, f"pass a Decimal or an int, not a float ({value!r}): floats are not exact")
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InvalidValue(field, f"pass a Decimal or an int, not {type(value).__name__}")
    return numbers.exact_double(value, field)


def usage_event(
    tenant_id: str,
    subscription_id: str,
    metric_code: str,
    value: Decimal | int,
    recorded_at: datetime,
    *,
    idempotency_key: str,
    metadata: Mapping[str, str] | None = None,
    event_id: str | None = None,
) -> UsageEvent:
    """The event ``record_usage`` sends, after its checks (InvalidValue naming the field); apart
    so that a batch (``billing serve``'s IngestUsage) is checked whole before any of it is sent."""
    for name, text, limit in (
        ("tenant_id", tenant_id, MAX_CODE),
        ("subscription_id", subscription_id, MAX_CODE),
        ("metric_code", metric_code, MAX_CODE),
        ("idempotency_key", idempotency_key, MAX_KEY),
        ("event_id", event_id, MAX_KEY),
    ):
        if name == "event_id" and text is None:
            continue
        if not isinstance(text, str) or not text:
            detail = "required: it makes retries count once" if name == "idempotency_key" else "required"
            raise InvalidValue(name, f"{detail}; got {text!r}")
        bounded_text(text, name, limit)
    number = exact_double(value)
    if not isinstance(recorded_at, datetime) or recorded_at.tzinfo is None:
        raise InvalidValue("recorded_at", f"must be a timezone-aware datetime, got {recorded_at!r}")
    for key, item in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidValue(f"metadata[{key!r}]", "metadata keys and values must be strings")
    bounded_metadata(metadata or {}, "metadata")
    return UsageEvent(
        event_id or idempotency_key,
        tenant_id,
        subscription_id,
        metric_code,
        number,
        epoch_ms(recorded_at),
        idempotency_key,
        dict(metadata or {}),
    )


class BillingClient:
    """Records usage on ``usage.events``. Not thread-safe: one client per thread."""

    def __init__(self, bootstrap_servers: str, *, batch_size: int = 1, topic: str = USAGE_EVENTS) -> None:
        self.producer = UsageProducer(bootstrap_servers, topic, batch_size=batch_size)

    def record_usage(
        self,
        tenant_id: str,
        subscription_id: str,
        metric_code: str,
        value: Decimal | int,
        recorded_at: datetime,
        *,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
        event_id: str | None = None,
    ) -> None:
        """Queue one usage event; ``flush`` (or leaving the ``with`` block) confirms delivery.
        Raises InvalidValue naming the field for input the pipeline could not bill exactly."""
        event = usage_event(
            tenant_id,
            subscription_id,
            metric_code,
            value,
            recorded_at,
            idempotency_key=idempotency_key,
            metadata=metadata,
            event_id=event_id,
        )
        self.producer.send(event)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every recorded event is acknowledged; DeliveryError if any was not (record
        them again with the same idempotency keys: they count once)."""
        self.producer.flush(timeout)

    def __enter__(self) -> BillingClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Events recorded before an exception were accepted by record_usage: send them anyway.
        try:
            self.flush()
        except DeliveryError as failure:
            if error is None:
                raise
            error.add_note(f"and the usage recorded before it was not all delivered: {failure}")
