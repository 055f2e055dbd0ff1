"""A small Python SDK for recording usage:

    with BillingClient("localhost:9092") as billing:
        billing.record_usage("t1", "sub_1", "api_calls", Decimal(3), at, idempotency_key="req-81f2")

The idempotency key is required: it is what makes a retry (of a timed-out call, of a crashed
job) count once. Values are Decimal or int, never float, so what is recorded is what was meant;
on the wire they travel as the contract's double (design section 3).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from types import TracebackType

from rating.errors import InvalidValue
from rating.periods import epoch_ms
from streams.kafka.producer import UsageProducer
from streams.operators.records import UsageEvent


class BillingClient:
    def __init__(self, bootstrap_servers: str, *, batch_size: int = 1) -> None:
        self.producer = UsageProducer(bootstrap_servers, batch_size=batch_size)

    def record_usage(
        self,
        tenant_id: str,
        subscription_id: str,
        metric_code: str,
        value: Decimal | int,
        recorded_at: datetime,
        *,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
        event_id: str | None = None,
    ) -> None:
        """Queue one usage event; ``flush`` (or leaving the ``with`` block) confirms delivery."""
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise InvalidValue("value", f"pass a Decimal or an int, not {type(value).__name__}: floats are not exact")
        if not idempotency_key:
            raise InvalidValue("idempotency_key", "required: it makes retries count once")
        if recorded_at.tzinfo is None:
            raise InvalidValue("recorded_at", "must be timezone-aware")
        for name, text in (
            ("tenant_id", tenant_id),
            ("subscription_id", subscription_id),
            ("metric_code", metric_code),
        ):
            if not text:
                raise InvalidValue(name, "must not be empty")
        number = float(value)
        if Decimal(repr(number)) != Decimal(value):
            raise InvalidValue("value", f"{value} has no exact double; round it to at most 15 significant digits")
        self.producer.send(
            UsageEvent(
                event_id or idempotency_key,
                tenant_id,
                subscription_id,
                metric_code,
                number,
                epoch_ms(recorded_at),
                idempotency_key,
                dict(metadata or {}),
            )
        )

    def flush(self, timeout: float = 60.0) -> None:
        self.producer.flush(timeout)

    def __enter__(self) -> BillingClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is None:
            self.flush()
