"""Synthetic usage for ``billing produce --generate``, benchmarks and fault tests: deterministic for
a seed, with the mess real traffic has in exact proportions, and the answer it should produce.

Of ``count`` events, ``round(count × rate)`` are of each kind, the rest are fresh:

* fresh: a new identity, recorded after every event generated before it (event times advance
  through ``[start_ms, start_ms + span_ms)``);
* duplicate: an exact copy of an earlier valid event (a producer's retry);
* conflict: an earlier valid event's identity with another value (a producer bug; first write wins);
* out-of-order: a new identity recorded up to ``lateness_ms`` before the newest event so far;
* invalid: rejected by validation: a NaN or infinite value, an unknown metric, an unknown
  subscription or an empty idempotency key (in turn, by the seed).

The first event is always fresh; copies are taken from the last ``RECENT`` valid events, as retries
follow their originals closely.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from enum import StrEnum

from streams.operators.records import UsageEvent

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
RECENT = 1000
UNKNOWN_METRIC = "no_such_metric"
UNKNOWN_SUBSCRIPTION = "no_such_subscription"


class Kind(StrEnum):
    FRESH = "fresh"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    OUT_OF_ORDER = "out_of_order"
    INVALID = "invalid"


def planned(
    count: int,
    *,
    duplicate_rate: float = 0.0,
    conflict_rate: float = 0.0,
    out_of_order_rate: float = 0.0,
    invalid_rate: float = 0.0,
) -> dict[Kind, int]:
    """How many events of each kind ``generate`` makes for these rates."""
    rates = {
        Kind.DUPLICATE: duplicate_rate,
        Kind.CONFLICT: conflict_rate,
        Kind.OUT_OF_ORDER: out_of_order_rate,
        Kind.INVALID: invalid_rate,
    }
    for kind, rate in rates.items():
        if not 0 <= rate <= 1:
            raise ValueError(f"{kind} rate must be between 0 and 1, got {rate}")
    counts = {kind: round(count * rate) for kind, rate in rates.items()}
    fresh = count - sum(counts.values())
    if count > 0 and fresh < 1:
        raise ValueError(f"rates add up to {sum(rates.values())}: no room for the fresh events copies are made of")
    return {Kind.FRESH: fresh, **counts}


def generate(
    count: int,
    subscriptions: Sequence[str],
    metrics: Sequence[str],
    *,
    tenant_id: str = "t1",
    start_ms: int,
    span_ms: int = 30 * DAY_MS,
    duplicate_rate: float = 0.05,
    conflict_rate: float = 0.0,
    out_of_order_rate: float = 0.0,
    invalid_rate: float = 0.0,
    lateness_ms: int = 2 * HOUR_MS,
    seed: int = 1,
) -> Iterator[UsageEvent]:
    """``count`` events of ``subscriptions`` and ``metrics``, kinds mixed as the rates say (see the
    module docstring); the same arguments give the same events."""
    if count > 0 and (not subscriptions or not metrics):
        raise ValueError("need at least one subscription and one metric")
    rng = random.Random(seed)
    left = planned(
        count,
        duplicate_rate=duplicate_rate,
        conflict_rate=conflict_rate,
        out_of_order_rate=out_of_order_rate,
        invalid_rate=invalid_rate,
    )
    kinds = list(left)
    recent: deque[UsageEvent] = deque(maxlen=RECENT)
    newest = start_ms
    step = max(1, span_ms // max(count, 1))
    for n in range(count):
        if n == 0:
            kind = Kind.FRESH
        else:
            # Selection sampling: each kind with probability left/remaining, so the counts are exact.
            pick = rng.randrange(count - n)
            for kind in kinds:
                if pick < left[kind]:
                    break
                pick -= left[kind]
        left[kind] -= 1
        if kind is Kind.DUPLICATE:
            yield rng.choice(recent)
            continue
        if kind is Kind.CONFLICT:
            original = rng.choice(recent)
            cents = round(original.value * 100) + 1 + rng.randrange(100)
            yield replace(original, id=f"e{seed}-{n}", value=cents / 100)
            continue
        event = UsageEvent(
            f"e{seed}-{n}",
            tenant_id,
            subscriptions[rng.randrange(len(subscriptions))],
            metrics[rng.randrange(len(metrics))],
            rng.randrange(1, 100_000) / 100,
            newest,
            f"g{seed}-{n}",
            {"user": f"u{rng.randrange(50)}"},
        )
        if kind is Kind.FRESH:
            # Strictly after every earlier event: n × span / count plus a jitter below one step.
            newest = max(newest, start_ms + n * span_ms // count + rng.randrange(step))
            event = replace(event, recorded_at_ms=newest)
        elif kind is Kind.OUT_OF_ORDER:
            event = replace(event, recorded_at_ms=newest - 1 - rng.randrange(max(1, lateness_ms)))
        else:
            event = _spoil(event, rng.randrange(5))
            yield event
            continue
        recent.append(event)
        yield event


def _spoil(event: UsageEvent, how: int) -> UsageEvent:
    if how == 0:
        return replace(event, value=math.nan)
    if how == 1:
        return replace(event, value=math.inf)
    if how == 2:
        return replace(event, metric_code=UNKNOWN_METRIC)
    if how == 3:
        return replace(event, subscription_id=UNKNOWN_SUBSCRIPTION)
    return replace(event, idempotency_key="")
