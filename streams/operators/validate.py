"""Validate: a wire event becomes a UsageRecord or a Rejection with a reason. Never raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rating.catalog import Metric, MetricType
from rating.errors import InvalidValue
from rating.limits import (
    MAX_CODE,
    MAX_KEY,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    metadata_problem,
    printable,
    text_problem,
)
from rating.numbers import decimal_from_double
from streams.operators.records import Reason, Rejection, UsageEvent, UsageRecord


@dataclass(frozen=True, slots=True)
class SubscriptionRef:
    """What the pipeline must know of a subscription: its tenant, its calendar timezone and, when
    known, when it starts (epoch ms; an event recorded before then is dead-lettered, not stored)."""

    id: str
    tenant_id: str
    timezone: str = "UTC"
    start_ms: int | None = None


DEFAULT_FUTURE_SKEW_MS = 5 * 60 * 1000


def validate(
    event: UsageEvent,
    metric_of: Callable[[str], Metric | None],
    subscription_of: Callable[[str], SubscriptionRef | None],
    now_ms: int,
    max_future_skew_ms: int = DEFAULT_FUTURE_SKEW_MS,
    oldest_ms: int | None = None,
) -> UsageRecord | Rejection:
    """Check one event against the catalog and the clock; the first failing rule names the field."""

    def reject(reason: Reason, detail: str, field: str | None) -> Rejection:
        return Rejection(reason, detail, field, event.subscription_id or None, event.idempotency_key or None)

    if not event.subscription_id:
        return reject(Reason.MISSING_FIELD, "subscription_id is empty", "subscription_id")
    if not event.idempotency_key:
        return reject(Reason.MISSING_IDEMPOTENCY_KEY, "idempotency_key is empty", "idempotency_key")
    beyond = _beyond_limits(event)
    if beyond is not None:
        field, detail = beyond
        subscription_id = None if text_problem(event.subscription_id, MAX_CODE) else event.subscription_id
        key = None if text_problem(event.idempotency_key, MAX_KEY) else event.idempotency_key
        return Rejection(Reason.INVALID_TEXT, detail, field, subscription_id, key)
    metric = metric_of(event.metric_code)
    if metric is None:
        return reject(Reason.UNKNOWN_METRIC, f"no metric {event.metric_code!r}", "metric_code")
    subscription = subscription_of(event.subscription_id)
    if subscription is None:
        return reject(Reason.UNKNOWN_SUBSCRIPTION, f"no subscription {event.subscription_id!r}", "subscription_id")
    if event.tenant_id and event.tenant_id != subscription.tenant_id:
        return reject(Reason.TENANT_MISMATCH, "subscription belongs to another tenant", "tenant_id")
    try:
        value = decimal_from_double(event.value)
    except InvalidValue as error:
        return reject(Reason.INVALID_VALUE, error.message, "value")
    if value < 0 and metric.type is MetricType.COUNTER:
        return reject(Reason.NEGATIVE_VALUE, f"COUNTER {metric.code} got {value}", "value")
    if event.recorded_at_ms > now_ms + max_future_skew_ms:
        return reject(
            Reason.FUTURE_TIMESTAMP, f"recorded_at is {event.recorded_at_ms - now_ms} ms ahead", "recorded_at"
        )
    if subscription.start_ms is not None and event.recorded_at_ms < subscription.start_ms:
        # before retention: this reason depends on the event alone, not on when it is processed
        return reject(
            Reason.OUTSIDE_SUBSCRIPTION,
            f"recorded_at is {subscription.start_ms - event.recorded_at_ms} ms before the subscription starts",
            "recorded_at",
        )
    if oldest_ms is not None and event.recorded_at_ms < oldest_ms:
        return reject(
            Reason.BEYOND_RETENTION,
            f"recorded_at is {oldest_ms - event.recorded_at_ms} ms before the dedup horizon",
            "recorded_at",
        )
    unique = event.metadata.get(metric.field) if metric.field else None
    return UsageRecord(
        event.id,
        subscription.tenant_id,
        event.subscription_id,
        event.metric_code,
        value,
        event.recorded_at_ms,
        event.idempotency_key,
        event.metadata,
        unique,
    )


def _beyond_limits(event: UsageEvent) -> tuple[str, str] | None:
    """The first text field beyond its limits, and why (rating/limits.py). An empty event id or
    tenant is allowed (informational; taken from the subscription), an empty metric code is unknown."""
    if _within_limits(event):
        return None
    for field, text, limit in (
        ("id", event.id, MAX_KEY),
        ("tenant_id", event.tenant_id, MAX_CODE),
        ("subscription_id", event.subscription_id, MAX_CODE),
        ("metric_code", event.metric_code, MAX_CODE),
        ("idempotency_key", event.idempotency_key, MAX_KEY),
    ):
        problem = text_problem(text, limit) if text else None
        if problem is not None:
            return field, problem
    problem = metadata_problem(event.metadata) if event.metadata else None
    return None if problem is None else ("metadata", problem)


def _within_limits(event: UsageEvent) -> bool:
    """The fast path of ``_beyond_limits`` (nearly every event passes it): lengths, blanks, then one
    regex pass over all the text. False sends the event to the exact checks, which name the field."""
    texts = [event.id, event.tenant_id, event.subscription_id, event.metric_code, event.idempotency_key]
    if (
        len(event.id) > MAX_KEY
        or len(event.tenant_id) > MAX_CODE
        or len(event.subscription_id) > MAX_CODE
        or len(event.metric_code) > MAX_CODE
        or len(event.idempotency_key) > MAX_KEY
        or len(event.metadata) > MAX_METADATA_ENTRIES
        or event.id.isspace()
        or event.tenant_id.isspace()
        or event.subscription_id.isspace()
        or event.metric_code.isspace()
        or event.idempotency_key.isspace()
    ):
        return False
    for key, value in event.metadata.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            return False
        if not 0 < len(key) <= MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE or key.isspace():
            return False
        texts += (key, value)
    return printable(*texts)
