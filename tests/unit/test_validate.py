"""Validation: every bad event becomes a Rejection with its reason and field; never raises."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.catalog import Aggregation, Metric
from streams.operators.records import Reason, Rejection, UsageRecord
from streams.operators.validate import SubscriptionRef, validate
from tests.unit.operator_inputs import BASE, METRICS, SUBS, event

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"subscription_id": ""}, Reason.MISSING_FIELD, "subscription_id"),
        ({"idempotency_key": ""}, Reason.MISSING_IDEMPOTENCY_KEY, "idempotency_key"),
        ({"metric_code": "nope"}, Reason.UNKNOWN_METRIC, "metric_code"),
        ({"metric_code": ""}, Reason.UNKNOWN_METRIC, "metric_code"),
        ({"subscription_id": "ghost"}, Reason.UNKNOWN_SUBSCRIPTION, "subscription_id"),
        ({"tenant_id": "t2"}, Reason.TENANT_MISMATCH, "tenant_id"),
        ({"value": float("nan")}, Reason.INVALID_VALUE, "value"),
        ({"value": float("inf")}, Reason.INVALID_VALUE, "value"),
        ({"value": 1e26}, Reason.INVALID_VALUE, "value"),
        ({"value": "1"}, Reason.INVALID_VALUE, "value"),
        ({"value": -0.5}, Reason.NEGATIVE_VALUE, "value"),
        ({"recorded_at_ms": BASE + 5 * 60_000 + 1}, Reason.FUTURE_TIMESTAMP, "recorded_at"),
    ],
)
def test_validate_rejects_with_reason_and_field(changes: dict[str, object], reason: Reason, field: str) -> None:
    checked = validate(event(**changes), METRICS.get, SUBS.get, BASE)
    assert isinstance(checked, Rejection)
    assert (checked.reason, checked.field) == (reason, field)


def test_validate_accepts_edges() -> None:
    at_skew = validate(event(recorded_at_ms=BASE + 5 * 60_000), METRICS.get, SUBS.get, BASE)
    assert isinstance(at_skew, UsageRecord)
    no_tenant = validate(event(tenant_id=""), METRICS.get, SUBS.get, BASE)  # taken from the subscription
    assert isinstance(no_tenant, UsageRecord) and no_tenant.tenant_id == "t1"
    negative_gauge = validate(event(metric_code="temp", value=-3.5), METRICS.get, SUBS.get, BASE)
    assert isinstance(negative_gauge, UsageRecord) and negative_gauge.value == Decimal("-3.5")
    unique = validate(event(metric_code="users", metadata={"user": "u7"}), METRICS.get, SUBS.get, BASE)
    assert isinstance(unique, UsageRecord) and unique.unique == "u7"


def test_validate_beyond_the_dedup_horizon() -> None:
    checked = validate(event(recorded_at_ms=BASE - 1), METRICS.get, SUBS.get, BASE, oldest_ms=BASE)
    assert isinstance(checked, Rejection) and checked.reason is Reason.BEYOND_RETENTION


@pytest.mark.parametrize("value", [1e48, 1e300, -1e300, 1.7976931348623157e308])
def test_validate_never_raises_on_an_oversized_value(value: float) -> None:
    # decimal_from_double used to raise decimal.InvalidOperation here, past `except InvalidValue`
    checked = validate(event(metric_code="temp", value=value), METRICS.get, SUBS.get, BASE)
    assert isinstance(checked, Rejection)
    assert (checked.reason, checked.field) == (Reason.INVALID_VALUE, "value")


def test_an_event_before_the_subscription_starts_is_rejected_not_stored() -> None:
    subs = {"s": SubscriptionRef("s", "t1", "UTC", start_ms=BASE)}
    before = validate(event(recorded_at_ms=BASE - 1), METRICS.get, subs.get, BASE)
    assert isinstance(before, Rejection)
    assert (before.reason, before.field) == (Reason.OUTSIDE_SUBSCRIPTION, "recorded_at")
    assert before.reason == "outside_subscription"
    assert isinstance(validate(event(recorded_at_ms=BASE), METRICS.get, subs.get, BASE), UsageRecord)  # half-open
    # the reason is the event's own, whatever the pipeline's dedup horizon
    old = validate(event(recorded_at_ms=BASE - 1), METRICS.get, subs.get, BASE, oldest_ms=BASE)
    assert isinstance(old, Rejection) and old.reason is Reason.OUTSIDE_SUBSCRIPTION


def test_a_subscription_without_a_known_start_accepts_any_past_event() -> None:
    checked = validate(event(recorded_at_ms=0), METRICS.get, SUBS.get, BASE)
    assert isinstance(checked, UsageRecord)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": "e" * 257}, "id"),
        ({"tenant_id": "t" * 129}, "tenant_id"),
        ({"subscription_id": "s" * 129}, "subscription_id"),
        ({"subscription_id": "s\x00"}, "subscription_id"),
        ({"metric_code": "calls\n"}, "metric_code"),
        ({"metric_code": "c" * 10_000_000}, "metric_code"),
        ({"idempotency_key": "k" * 257}, "idempotency_key"),
        ({"idempotency_key": "k\x7f"}, "idempotency_key"),
        ({"metadata": {f"k{n}": "v" for n in range(33)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"": "v"}}, "metadata"),
        ({"metadata": {"user": "v" * 1025}}, "metadata"),
        ({"metadata": {"user": "a\x00b"}}, "metadata"),
    ],
)
def test_text_beyond_the_limits_is_rejected_naming_the_field(changes: dict[str, object], field: str) -> None:
    checked = validate(event(**changes), METRICS.get, SUBS.get, BASE)
    assert isinstance(checked, Rejection)
    assert (checked.reason, checked.field) == (Reason.INVALID_TEXT, field)
    assert checked.reason == "invalid_text"
    assert len(checked.detail) < 200  # a 10 MB code is not copied into the dead letter's detail
    # the rejection keeps an identity only when it is itself within the limits
    assert checked.subscription_id in ("s", None) and checked.idempotency_key in ("k1", None)


def test_text_at_the_limits_is_accepted() -> None:
    checked = validate(
        event(
            id="e" * 256,
            idempotency_key="k" * 256,
            metric_code="users",
            metadata={f"{n:064d}": "é" * 1024 for n in range(32)} | {"user": "u1"},
        ),
        {"users": Metric("users", aggregation=Aggregation.UNIQUE_COUNT, field="user")}.get,
        SUBS.get,
        BASE,
    )
    assert isinstance(checked, Rejection)  # 33 entries: one too many
    metadata = {f"{n:064d}": "é 🙂" * 300 for n in range(31)} | {"user": "u1"}
    checked = validate(event(id="e" * 256, idempotency_key="k" * 256, metadata=metadata), METRICS.get, SUBS.get, BASE)
    assert isinstance(checked, UsageRecord)
