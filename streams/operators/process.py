"""One event through the shared operators against state the driver owns: validate → dedup → windows.

Drivers (in-process, Faust) differ only in where the two state mappings live and how outcomes
are written; the steps are these, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import NamedTuple

from rating.catalog import Metric
from streams.operators.dedup import DedupEntry, Verdict, decide, dedup_key
from streams.operators.records import Reason, Rejection, UsageEvent, UsageRecord
from streams.operators.validate import DEFAULT_FUTURE_SKEW_MS, SubscriptionRef, validate
from streams.operators.windows import WindowAccumulator, WindowKey, WindowSpan, observe


class Outcome(NamedTuple):
    """What happened to one event; ``changed`` is the bucket it touched, with the spans of the
    bucket and of its roll-ups (``windows.observe``)."""

    verdict: Verdict | None
    record: UsageRecord | None = None
    rejection: Rejection | None = None
    changed: tuple[WindowKey, tuple[WindowSpan, ...]] | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """Lookups the operators need: metrics by code, subscriptions by id.

    ``metric_for`` (tenant id, code), when given, replaces ``metric_of`` for a catalog of many
    tenants (the Kafka worker's): an event's metric is looked up under the tenant of its
    subscription, so a metric of another tenant never matches."""

    metric_of: Callable[[str], Metric | None]
    subscription_of: Callable[[str], SubscriptionRef | None]
    metric_for: Callable[[str, str], Metric | None] | None = None


def _no_tenant_yet(code: str) -> Metric | None:
    """With the subscription unknown there is no tenant to look the metric up in: the metric step
    lets the event through and validate rejects it as unknown_subscription right after."""
    return Metric(code) if code else None


def metric_lookup(catalog: Catalog, subscription_id: str) -> Callable[[str], Metric | None]:
    """The metric lookup for an event of ``subscription_id``: by code alone, or under the tenant
    of the subscription."""
    metric_for = catalog.metric_for
    if metric_for is None:
        return catalog.metric_of
    subscription = catalog.subscription_of(subscription_id)
    if subscription is None:
        return _no_tenant_yet
    tenant_id = subscription.tenant_id
    return lambda code: metric_for(tenant_id, code)


def process_event(
    event: UsageEvent,
    catalog: Catalog,
    dedup_state: MutableMapping[str, DedupEntry],
    window_state: MutableMapping[WindowKey, WindowAccumulator],
    now_ms: int,
    *,
    partition: int = -1,
    position: int = -1,
    max_future_skew_ms: int = DEFAULT_FUTURE_SKEW_MS,
    oldest_ms: int | None = None,
) -> Outcome:
    """Validate, dedup (first write wins) and, when accepted, add the event to its bucket.

    With a source ``partition`` and ``position`` (Kafka drivers), a redelivered message is a
    REPLAY: it goes through the windows again, which count it only where their persisted state
    missed it, so the driver re-emits their absolute totals and a crash loses or doubles nothing.
    ``oldest_ms`` is the dedup horizon of a driver whose dedup state has a bounded retention."""
    metric_of = metric_lookup(catalog, event.subscription_id)
    checked = validate(event, metric_of, catalog.subscription_of, now_ms, max_future_skew_ms, oldest_ms)
    if isinstance(checked, Rejection):
        return Outcome(None, rejection=checked)
    key = dedup_key(checked.subscription_id, checked.idempotency_key)
    fingerprint = checked.fingerprint
    verdict = decide(dedup_state.get(key), fingerprint, partition, position)
    if verdict is Verdict.CONFLICT:
        rejection = Rejection(
            Reason.IDEMPOTENCY_CONFLICT,
            "same (subscription_id, idempotency_key) with a different payload; the first write wins",
            "idempotency_key",
            checked.subscription_id,
            checked.idempotency_key,
        )
        return Outcome(verdict, checked, rejection)
    if verdict is Verdict.DUPLICATE:
        return Outcome(verdict, checked)
    if verdict is Verdict.ACCEPTED:
        dedup_state[key] = DedupEntry(fingerprint, partition, position)
    metric = metric_of(checked.metric_code)
    subscription = catalog.subscription_of(checked.subscription_id)
    assert metric is not None and subscription is not None  # validated above
    changed = observe(window_state, checked.subscription_id, metric, subscription.timezone, checked.point, position)
    return Outcome(verdict, checked, changed=changed)
