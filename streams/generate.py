"""Synthetic usage for benchmarks and ``billing produce --generate``: deterministic for a seed,
with exact duplicates (producer retries) and out-of-order event times, as real traffic has."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from streams.operators.records import UsageEvent

DAY_MS = 86_400_000


def generate(
    count: int,
    subscriptions: Sequence[str],
    metrics: Sequence[str],
    *,
    tenant_id: str = "t1",
    start_ms: int,
    span_ms: int = 30 * DAY_MS,
    duplicate_rate: float = 0.05,
    seed: int = 1,
) -> Iterator[UsageEvent]:
    """``count`` events (duplicates included) spread over ``[start, start + span)``."""
    rng = random.Random(seed)
    made = 0
    n = 0
    while made < count:
        sub = subscriptions[rng.randrange(len(subscriptions))]
        metric = metrics[n % len(metrics)]
        at = start_ms + rng.randrange(span_ms)
        event = UsageEvent(
            f"e{seed}-{n}",
            tenant_id,
            sub,
            metric,
            float(rng.randrange(1, 1000)),
            at,
            f"g{seed}-{n}",
            {"user": f"u{rng.randrange(50)}"},
        )
        n += 1
        yield event
        made += 1
        if made < count and rng.random() < duplicate_rate:
            yield event
            made += 1
