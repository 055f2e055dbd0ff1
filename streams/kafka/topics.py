"""The pipeline's Kafka topics (design sections 1 and 3) and ``ensure_topics`` to create them.

Every pipeline topic is keyed by ``subscription_id`` and carries many records per key (events,
window totals of many windows, invoices of many periods), so none of them may be compacted:
compaction keeps only the newest record per key and would silently drop usage. Retention is by time
(``cleanup.policy=delete``). The workers' state lives in Faust's own changelog topics, which Faust
creates compacted itself.

The dead-letter topics keep their letters far longer than the broker's default 7 days
(``DLQ_RETENTION_MS``, a year): a letter is evidence of usage not billed yet, to be found, fixed and
replayed (``billing dlq``), often weeks later. ``ensure_topics`` creates them so and raises the
retention of an existing one that keeps letters for less; it never shortens one.

The catalog topics are the opposite: each record is the whole current state of its key (a plan
version, a subscription, a tenant's terms), so they are compacted (``cleanup.policy=compact``) and
keep the newest state of every key forever. So is the outbox relay's progress topic (docs/outbox.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public, re-exported without __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from confluent_kafka.cimpl import NewTopic

from invoicing.ledger.catalog import CATALOG_PLANS as CATALOG_PLANS
from invoicing.ledger.catalog import CATALOG_SUBSCRIPTIONS as CATALOG_SUBSCRIPTIONS
from invoicing.ledger.catalog import CATALOG_TERMS as CATALOG_TERMS
from invoicing.ledger.subscription_events import SUBSCRIPTION_EVENTS as SUBSCRIPTION_EVENTS
from streams.kafka.security import check_authentication, client_config

USAGE_EVENTS: Final = "usage.events"
"""Raw usage from producers: one ``UsageEvent`` or a ``UsageEventBatch`` per message."""
USAGE_DLQ: Final = "usage.dlq"
"""Dead letters: the original bytes of rejected input with a reason (the design's ``usage.dlq``)."""
USAGE_ACCEPTED: Final = "usage.accepted"
"""Distinct, validated events (``UsageRecord``) for the ClickHouse raw-events table."""
USAGE_WINDOWS: Final = "usage.windows"
"""Absolute, versioned window totals (``WindowTotal``) for the ClickHouse sink."""
RATING_RESULTS: Final = "rating.results"
"""``RatingResult`` of the rating agent (design section 1)."""
RATING_DLQ: Final = "rating.dlq"
"""``rating.results`` messages the invoice worker cannot invoice, in the ``DeadLetter`` envelope."""
INVOICE_FINALIZED: Final = "invoice.finalized"
"""Finalized invoices, published from the ledger's outbox (the same name as
``invoicing.service.INVOICE_FINALIZED``)."""
PAYMENT_EVENTS: Final = "payment.events"
"""PaymentSucceeded, PaymentFailed, PaymentRefunded and InvoiceOverdue, published from the ledger's
outbox (the same name as ``invoicing.ledger.postgres_payments.PAYMENT_EVENTS``), keyed by
``tenant/invoice-number``."""

PIPELINE_TOPICS: Final[tuple[str, ...]] = (
    USAGE_EVENTS,
    USAGE_DLQ,
    USAGE_ACCEPTED,
    USAGE_WINDOWS,
    RATING_RESULTS,
    RATING_DLQ,
    INVOICE_FINALIZED,
    PAYMENT_EVENTS,
)

OUTBOX_PROGRESS: Final = "outbox.progress"
"""The outbox relay's committed progress, one record per relay in the relay's Kafka transactions
(billing/publish/relay.py); one partition."""

CATALOG_TOPICS: Final[tuple[str, ...]] = (CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS)
"""Plan versions (key ``tenant_id/plan_code/version``), subscriptions (key ``subscription_id``) and
tenants' terms (key ``tenant_id``), published from the ledger's outbox (invoicing/ledger/catalog.py)."""
OUTBOX_TOPICS: Final[tuple[str, ...]] = (INVOICE_FINALIZED, SUBSCRIPTION_EVENTS, PAYMENT_EVENTS, *CATALOG_TOPICS)
"""The topics the ledger's outbox writes to."""
COMPACTED_TOPICS: Final[tuple[str, ...]] = (*CATALOG_TOPICS, OUTBOX_PROGRESS)

DLQ_TOPICS: Final[tuple[str, ...]] = (USAGE_DLQ, RATING_DLQ)
DLQ_RETENTION_MS: Final = 365 * 86_400_000
"""How long the dead-letter topics keep a letter unless told otherwise: a year."""

TOPIC_CONFIG: Final[Mapping[str, Mapping[str, str]]] = {
    **{name: {"cleanup.policy": "delete"} for name in PIPELINE_TOPICS},
    **{name: {"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)} for name in DLQ_TOPICS},
    **{name: {"cleanup.policy": "compact"} for name in COMPACTED_TOPICS},
    SUBSCRIPTION_EVENTS: {"cleanup.policy": "delete"},
}
"""Per-topic configuration at creation; usage is kept the broker's default time, dead letters a year."""


def _base(name: str) -> str | None:
    bases = [base for base in TOPIC_CONFIG if name.endswith(base)]
    return max(bases, key=len) if bases else None


def is_dead_letter_topic(name: str) -> bool:
    """Whether ``name`` is ``usage.dlq`` or ``rating.dlq``, also under a prefix."""
    return _base(name) in DLQ_TOPICS


def topic_config(name: str, dlq_retention_ms: int | None = None) -> Mapping[str, str]:
    """The configuration of a pipeline topic, also under a prefix (``sim-1.catalog.plans``);
    ``dlq_retention_ms`` replaces the dead-letter topics' retention."""
    base = _base(name)
    config = TOPIC_CONFIG[base] if base is not None else {}
    if dlq_retention_ms is not None and base in DLQ_TOPICS:
        return {**config, "retention.ms": str(dlq_retention_ms)}
    return config


def retention_ms(admin: AdminClient, topics: Sequence[str], *, timeout: float = 30.0) -> dict[str, int]:
    """The ``retention.ms`` of each of ``topics`` (they must exist); -1 means forever."""
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    found: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entry = future.result().get("retention.ms")
        found[resource.name] = int(entry.value) if entry is not None and entry.value is not None else -1
    return found


def set_retention(admin: AdminClient, topics: Mapping[str, int], *, timeout: float = 30.0) -> None:
    """Set ``retention.ms`` of existing topics (name → milliseconds, -1 for forever), nothing else."""
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[ConfigEntry("retention.ms", str(ms), incremental_operation=AlterConfigOpType.SET)],
        )
        for name, ms in topics.items()
    ]
    if not resources:
        return
    for future in admin.incremental_alter_configs(resources, request_timeout=timeout).values():
        future.result()


def raise_retention(admin: AdminClient, topics: Sequence[str], wanted_ms: int, *, timeout: float = 30.0) -> list[str]:
    """Give those of existing ``topics`` that keep records for less than ``wanted_ms`` that
    retention; never shortens one (an operator may have chosen longer, or forever). Returns the
    names altered."""
    current = retention_ms(admin, topics, timeout=timeout)
    shorter = {name: wanted_ms for name, ms in current.items() if ms != -1 and (wanted_ms == -1 or ms < wanted_ms)}
    set_retention(admin, shorter, timeout=timeout)
    return sorted(shorter)


BROKER_WAIT_S: Final = 10.0
"""How long a command waits for a broker to answer before it says there is none."""


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answered at the bootstrap servers in time."""


def ensure_topics(
    admin: AdminClient | str,
    partitions: int,
    *,
    replication: int = 1,
    topics: Sequence[str] = PIPELINE_TOPICS,
    timeout: float = 30.0,
    config: Mapping[str, str] | None = None,
    dlq_retention_ms: int = DLQ_RETENTION_MS,
) -> list[str]:
    """Create those of ``topics`` that are missing, with ``partitions`` partitions (use replication
    3 on a real cluster); returns the names created. Safe to run from several processes at once.

    ``admin`` is an ``AdminClient`` or a bootstrap servers string. Existing topics are left as they
    are, even when their partition count differs: repartitioning ``usage.events`` moves
    subscriptions away from their state, so that is an operator's decision, never a side effect.
    ``config`` replaces ``TOPIC_CONFIG`` for the topics created (e.g. a relay's own progress topic).
    Dead-letter topics are created with ``dlq_retention_ms``, and one that exists with a shorter
    retention gets it (``raise_retention``).
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    client = AdminClient(client_config(admin)) if isinstance(admin, str) else admin
    try:
        existing = client.list_topics(timeout=min(timeout, BROKER_WAIT_S)).topics
    except KafkaException as error:
        check_authentication(client)
        where = admin if isinstance(admin, str) else "the bootstrap servers"
        raise BrokerUnavailable(
            f"no Kafka broker answered at {where} within {min(timeout, BROKER_WAIT_S):g}s ({error.args[0].str()})"
        ) from None
    wanted = [
        NewTopic(
            name,
            partitions,
            replication,
            config=dict(topic_config(name, dlq_retention_ms) if config is None else config),
        )
        for name in topics
        if name not in existing
    ]
    kept = [name for name in topics if name in existing and config is None and is_dead_letter_topic(name)]
    if kept:
        raise_retention(client, kept, dlq_retention_ms, timeout=timeout)
    if not wanted:
        return []
    created: list[str] = []
    for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as error:
            # Another process created it between our listing and our request: that is the goal.
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        else:
            created.append(name)
    return created
