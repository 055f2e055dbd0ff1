"""Who may do what on a secured cluster: one Kafka principal per role, each allowed only the topics,
consumer groups and transactional ids its code uses (docs/operations.md § Kafka security has the
table). A principal with no ACL is denied everything (the StandardAuthorizer's default), so a
client without credentials, or the producers' principal, cannot write ``rating.results`` and mint
invoices.

``role_acls`` is data (the table), ``apply_acls`` writes it with an AdminClient; ops/kafka.py applies
it to the brokers it starts with ``--secure``, and an operator can do the same on any cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from invoicing.ledger.catalog import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS
from streams.kafka.topics import (
    OUTBOX_PROGRESS,
    OUTBOX_TOPICS,
    RATING_DLQ,
    RATING_RESULTS,
    USAGE_ACCEPTED,
    USAGE_DLQ,
    USAGE_EVENTS,
    USAGE_WINDOWS,
)

ROLES: Final = ("producer", "usage", "sink", "rater", "invoicer", "relay")
"""The principals (SCRAM user names) of the pipeline's roles; the SDK, ``billing produce`` and the
API produce as ``producer``. ``admin`` (a super user) provisions topics and ACLs and is no role's."""
ADMIN: Final = "admin"

BILLING_CALENDAR: Final = "billing.calendar"  # billing.rate.settings.BILLING_CALENDAR (the rater's)
USAGE_APP: Final = "billing-usage"  # the usage worker's default --app-id: its group, state topic, transactions
SINK_GROUP: Final = "billing-sink"
INVOICER_GROUP: Final = "billing-invoicer"
RELAY_ID: Final = "billing-outbox-relay"  # billing.publish.relay.DEFAULT_TRANSACTIONAL_ID
CATALOG_READER: Final = "billing-catalog-reader"  # streams/kafka/catalog_tables.py

READ: Final = ("READ", "DESCRIBE")
WRITE: Final = ("WRITE", "DESCRIBE")
READ_WRITE: Final = ("READ", "WRITE", "DESCRIBE")


@dataclass(frozen=True)
class Grant:
    """``principal`` may do ``operations`` on the resource (``LITERAL`` name or ``PREFIXED`` by it)."""

    principal: str
    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    name: str
    operations: tuple[str, ...]
    pattern: str = "LITERAL"


def role_acls(topic_prefix: str = "", usage_app: str | None = None) -> list[Grant]:
    """The ACL table of every role for a pipeline under ``topic_prefix`` (``--topic-prefix`` of
    the commands, which also prefixes their groups and transactional ids) whose usage worker runs
    with ``--app-id usage_app`` (default: the prefix and ``billing-usage``)."""
    usage_app = usage_app or topic_prefix + USAGE_APP
    relay_id = topic_prefix + RELAY_ID

    def topics(principal: str, names: Iterable[str], operations: tuple[str, ...]) -> list[Grant]:
        return [Grant(principal, "TOPIC", topic_prefix + name, operations) for name in names]

    def group(principal: str, name: str, operations: tuple[str, ...] = ("READ",)) -> Grant:
        return Grant(principal, "GROUP", name, operations, "PREFIXED")

    sink_topics = (USAGE_ACCEPTED, USAGE_WINDOWS)
    return [
        # the SDK, billing produce, the API: usage in, nothing else (the topic is described to check it exists)
        *topics("producer", [USAGE_EVENTS], WRITE),
        # the usage worker: usage.events → accepted, windows, dead letters; its own state, group and transactions
        *topics("usage", [USAGE_EVENTS, CATALOG_TERMS, CATALOG_SUBSCRIPTIONS], READ),
        *topics("usage", [USAGE_ACCEPTED, USAGE_WINDOWS], WRITE),
        *topics("usage", [USAGE_DLQ], (*WRITE, "DESCRIBE_CONFIGS")),  # ensure_topics checks its retention
        # its state topic and Faust's own internal topics, which Faust creates
        Grant("usage", "TOPIC", usage_app, (*READ_WRITE, "CREATE", "DESCRIBE_CONFIGS"), "PREFIXED"),
        group("usage", usage_app),
        group("usage", CATALOG_READER),
        Grant("usage", "TRANSACTIONAL_ID", f"{usage_app}-usage-", ("WRITE", "DESCRIBE"), "PREFIXED"),
        # the sink: accepted events and windows into the usage store
        *topics("sink", sink_topics, READ),
        group("sink", topic_prefix + SINK_GROUP),
        # the rater runs the sink too; reads the catalog, the usage worker's progress, writes ratings
        *topics("rater", sink_topics, READ),
        group("rater", topic_prefix + SINK_GROUP),
        *topics("rater", [USAGE_EVENTS], ("DESCRIBE",)),  # its end offsets: is the pipeline behind?
        group("rater", usage_app, ("DESCRIBE",)),  # the usage worker's committed offsets, never joins
        *topics("rater", [CATALOG_TERMS, CATALOG_PLANS, CATALOG_SUBSCRIPTIONS], READ),
        group("rater", CATALOG_READER),
        *topics("rater", [BILLING_CALENDAR], READ_WRITE),
        group("rater", topic_prefix + "billing-rater"),
        *topics("rater", [RATING_RESULTS], WRITE),
        # the invoice worker: ratings in, invoices into the ledger, undecidable ones to rating.dlq
        *topics("invoicer", [RATING_RESULTS], READ),
        group("invoicer", topic_prefix + INVOICER_GROUP),
        *topics("invoicer", [RATING_DLQ], (*WRITE, "DESCRIBE_CONFIGS")),
        # the relay: the ledger's outbox → invoice.finalized and the catalog …, in its transactions
        *topics("relay", OUTBOX_TOPICS, WRITE),
        *topics("relay", [OUTBOX_PROGRESS], READ_WRITE),
        group("relay", relay_id),
        Grant("relay", "TRANSACTIONAL_ID", relay_id, ("WRITE", "DESCRIBE"), "PREFIXED"),
    ]


def apply_acls(admin: Any, grants: Iterable[Grant], timeout: float = 30.0) -> int:
    """Create the ALLOW ACLs of ``grants`` with ``admin`` (a confluent-kafka AdminClient of a super
    user); creating an existing ACL again is harmless. Returns how many bindings were created."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public, re-exported without __all__
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    bindings = [
        AclBinding(
            ResourceType[grant.resource],
            grant.name,
            ResourcePatternType[grant.pattern],
            f"User:{grant.principal}",
            "*",
            AclOperation[operation],
            AclPermissionType.ALLOW,
        )
        for grant in grants
        for operation in grant.operations
    ]
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result()
    return len(bindings)


def allowed(grants: Iterable[Grant]) -> Mapping[str, list[Grant]]:
    """The grants by principal, for docs and tests."""
    by: dict[str, list[Grant]] = {}
    for grant in grants:
        by.setdefault(grant.principal, []).append(grant)
    return by


def provision_topics(admin: Any, partitions: int, topic_prefix: str = "", usage_app: str | None = None) -> list[str]:
    """Create every topic of the pipeline that is missing, as a super user: on a secured cluster
    the roles may not create them (only the usage worker its own state and Faust's topics).
    Returns the names created."""
    from streams.kafka.topics import OUTBOX_TOPICS, PIPELINE_TOPICS, ensure_topics

    compacted = {"cleanup.policy": "compact"}
    names = [topic_prefix + name for name in dict.fromkeys((*PIPELINE_TOPICS, *OUTBOX_TOPICS))]
    created = ensure_topics(admin, partitions, topics=names)
    created += ensure_topics(admin, partitions, topics=[topic_prefix + BILLING_CALENDAR], config=compacted)
    state = f"{usage_app or topic_prefix + USAGE_APP}-state"
    created += ensure_topics(admin, partitions, topics=[state], config=compacted)
    created += ensure_topics(admin, 1, topics=[topic_prefix + OUTBOX_PROGRESS], config=compacted)
    return created


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.kafka.acls``: as the admin of the environment's settings (a super user),
    create the pipeline's missing topics and every role's ACLs on the cluster; what compose's
    ``topics`` service runs, and what an operator runs on an existing secured cluster."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from streams.kafka.security import KafkaSecurityError, client_config
    from streams.kafka.topics import BrokerUnavailable

    parser = argparse.ArgumentParser(prog="python -m streams.kafka.acls", description=main.__doc__)
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topics created (6)")
    parser.add_argument("--topic-prefix", default="", help="the pipeline's --topic-prefix")
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error(f"--partitions must be at least 1, got {args.partitions}")
    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "localhost:9092"
    try:
        admin = AdminClient(client_config(bootstrap, {"socket.connection.setup.timeout.ms": 10_000}))
        created = provision_topics(admin, args.partitions, args.topic_prefix)
        bindings = apply_acls(admin, role_acls(args.topic_prefix))
    except KafkaSecurityError as error:
        print(f"error: Kafka security settings: {error}", file=sys.stderr)
        return 2
    except (BrokerUnavailable, KafkaException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(created)} topics created, {bindings} ACL bindings for {', '.join(ROLES)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
