"""What the unit tests of the stream operators (validate, dedup, windows) run on: one metric of
each kind, two subscriptions (UTC and a quarter-hour offset zone) and a usage event builder."""

from __future__ import annotations

from rating.catalog import Aggregation, Metric, MetricType
from streams.operators.process import Catalog
from streams.operators.records import UsageEvent
from streams.operators.validate import SubscriptionRef

BASE = 1_767_225_600_000  # 2026-01-01T00:00Z
METRICS = {
    "calls": Metric("calls"),
    "gb": Metric("gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM),
    "temp": Metric("temp", MetricType.GAUGE, Aggregation.MAX),
    "users": Metric("users", aggregation=Aggregation.UNIQUE_COUNT, field="user"),
}
SUBS = {"s": SubscriptionRef("s", "t1", "UTC"), "k": SubscriptionRef("k", "t1", "Asia/Kathmandu")}
CATALOG = Catalog(METRICS.get, SUBS.get)


def event(**changes: object) -> UsageEvent:
    """A valid ``calls`` event of subscription ``s`` at ``BASE``, with ``changes`` applied."""
    fields: dict[str, object] = {
        "id": "e1",
        "tenant_id": "t1",
        "subscription_id": "s",
        "metric_code": "calls",
        "value": 1.0,
        "recorded_at_ms": BASE,
        "idempotency_key": "k1",
        "metadata": {},
    }
    fields.update(changes)
    return UsageEvent(**fields)  # type: ignore[arg-type]
