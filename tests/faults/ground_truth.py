"""An oracle for the streaming fault tests, written independently of the operators: from the
produced events alone, the distinct valid events and the absolute totals of every 15-minute
bucket and every local hour, day and month. Deliberately plain (zoneinfo arithmetic, sorting,
no incremental state) so that a bug in the pipeline cannot hide in a shared helper."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

QUARTER_MS = 900_000


@dataclass(frozen=True)
class Produced:
    """One produced event as the test knows it (value may be NaN; fields may be empty)."""

    subscription_id: str
    metric_code: str
    value: float
    recorded_at_ms: int
    idempotency_key: str
    user: str | None
    tenant_id: str = "t1"


@dataclass(frozen=True)
class MetricSpec:
    aggregation: str  # SUM, COUNT, MAX, LATEST, UNIQUE_COUNT, TIME_WEIGHTED_SUM
    counter: bool = True


def invalid_reason(
    event: Produced, metrics: dict[str, MetricSpec], timezones: dict[str, str], now_ms: int, skew_ms: int
) -> str | None:
    if not event.subscription_id:
        return "missing_field"
    if not event.idempotency_key:
        return "missing_idempotency_key"
    spec = metrics.get(event.metric_code)
    if spec is None:
        return "unknown_metric"
    if event.subscription_id not in timezones:
        return "unknown_subscription"
    if math.isnan(event.value) or math.isinf(event.value):
        return "invalid_value"
    if event.value < 0 and spec.counter:
        return "negative_value"
    if event.recorded_at_ms > now_ms + skew_ms:
        return "future_timestamp"
    return None


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def windows_of(at_ms: int, timezone: str) -> dict[str, int]:
    """Start (UTC ms) of the bucket, local hour, local day and local month holding ``at_ms``."""
    tz = ZoneInfo(timezone)
    local = _utc(at_ms).astimezone(tz)
    hour = local.replace(minute=0, second=0, microsecond=0)
    day = datetime(local.year, local.month, local.day, tzinfo=tz)
    month = datetime(local.year, local.month, 1, tzinfo=tz)
    return {
        "15m": at_ms - at_ms % QUARTER_MS,
        "hour": _ms(hour),
        "day": _ms(day),
        "month": _ms(month),
    }


@dataclass
class Expected:
    event_count: int
    total: Decimal
    maximum: Decimal
    latest: Decimal
    tw_integral: Decimal
    uniques: frozenset[str]


def exact(value: float) -> Decimal:
    """The shortest decimal that round-trips the double (design section 3)."""
    return Decimal(repr(value)) if value != int(value) else Decimal(int(value))


def expected_windows(
    produced: list[Produced],
    metrics: dict[str, MetricSpec],
    timezones: dict[str, str],
    now_ms: int,
    skew_ms: int = 5 * 60_000,
) -> tuple[dict[tuple[str, str, str, int], Expected], list[Produced]]:
    """Totals per (subscription, metric, granularity, start), from the first valid copy of each
    identity in produce order; and the distinct accepted events."""
    first: dict[tuple[str, str], Produced] = {}
    for event in produced:
        if invalid_reason(event, metrics, timezones, now_ms, skew_ms) is not None:
            continue
        first.setdefault((event.subscription_id, event.idempotency_key), event)
    grouped: dict[tuple[str, str, str, int], list[Produced]] = defaultdict(list)
    for event in first.values():
        for granularity, start in windows_of(event.recorded_at_ms, timezones[event.subscription_id]).items():
            grouped[(event.subscription_id, event.metric_code, granularity, start)].append(event)
    result = {}
    for key, events in grouped.items():
        ordered = sorted(events, key=lambda e: (e.recorded_at_ms, e.idempotency_key))
        values = [exact(e.value) for e in ordered]
        integral = sum(
            (v * (b.recorded_at_ms - a.recorded_at_ms) for v, a, b in zip(values, ordered, ordered[1:], strict=False)),
            Decimal(0),
        )
        result[key] = Expected(
            len(ordered),
            sum(values, Decimal(0)),
            max(values),
            values[-1],
            integral,
            frozenset(e.user for e in ordered if e.user is not None),
        )
    return result, list(first.values())
