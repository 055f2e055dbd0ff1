"""The rater's record of its calendar on the compacted ``billing.calendar`` topic, replayed on restart."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from confluent_kafka import Producer, TopicPartition

from billing.rate.catalog import RaterCatalog
from billing.rate.settings import BILLING_CALENDAR, RaterSettings
from invoicing.engine.calendar import Calendar, Change
from invoicing.engine.render import rfc3339_exact
from invoicing.engine.subscriptions import SubscriptionStatus
from invoicing.ledger.json_codec import subscription_from_json, subscription_to_json
from invoicing.ports import SubscriptionRecord
from rating.errors import UnknownReference
from streams.ingest.producer import TUNING
from streams.kafka.consumers import record_messages, topic_reader
from streams.kafka.security import client_config
from streams.kafka.topics import ensure_topics


class CalendarLog:
    """The ``billing.calendar`` topic: per subscription, the changes applied and what was handed over."""

    def __init__(self, settings: RaterSettings) -> None:
        self.topic = settings.topic(BILLING_CALENDAR)
        ensure_topics(
            settings.bootstrap_servers,
            1,
            topics=[self.topic],
            config={"cleanup.policy": "compact"},
        )
        self.settings = settings
        self.producer = Producer(client_config(settings.bootstrap_servers, TUNING, {"linger.ms": 5}))

    def read(self, catalog: RaterCatalog) -> tuple[dict[str, list[Change]], dict[str, datetime]]:
        """Everything recorded, decoded against the catalog (plans by version)."""
        consumer = topic_reader(self.settings.bootstrap_servers, f"{self.settings.topic_prefix}billing-rater-calendar")
        try:
            end = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=30)[1]
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            raw: dict[str, dict[str, Any]] = {}
            read = 0
            while read < end:
                for message in record_messages(consumer.consume(1000, timeout=1.0)):
                    key, value = message.key(), message.value()
                    read = (message.offset() or 0) + 1
                    if value is not None and key is not None:
                        raw[key.decode()] = json.loads(value)
        finally:
            consumer.close()
        history: dict[str, list[Change]] = {}
        handed: dict[str, datetime] = {}
        for sub, entry_of in raw.items():
            changes = []
            for entry in entry_of["changes"]:
                record = subscription_from_json(entry["record"])
                plan = catalog.plan_of(record)
                if plan is None:
                    raise UnknownReference(
                        "plan_code", f"{sub}: plan version {record.plan_version} is not in the catalog"
                    )
                changes.append(
                    Change(
                        datetime.fromisoformat(entry["at"]),
                        record.revision,
                        record.subscription,
                        plan,
                        entry["canceled"],
                        entry.get("trial_ended", False),
                    )
                )
            history[sub] = changes
            if entry_of["handed_over"] is not None:
                handed[sub] = datetime.fromisoformat(entry_of["handed_over"])
        return history, handed

    def record(self, calendar: Calendar, subscription_ids: Iterable[str]) -> None:
        """Write the subscriptions' current calendar record and wait until the broker has it."""
        for sub in subscription_ids:
            history = calendar.history.get(sub, [])
            handed = calendar.handed_over.get(sub)
            value = {
                "changes": [
                    {
                        "at": rfc3339_exact(c.at),
                        "canceled": c.canceled,
                        "trial_ended": c.trial_ended,
                        "record": subscription_to_json(
                            SubscriptionRecord(
                                c.subscription,
                                c.plan.version,
                                c.plan.billing_interval,
                                SubscriptionStatus.CANCELED if c.canceled else SubscriptionStatus.ACTIVE,
                                c.revision,
                            )
                        ),
                    }
                    for c in history
                ],
                "handed_over": None if handed is None else rfc3339_exact(handed),
            }
            self.producer.produce(self.topic, key=sub.encode(), value=json.dumps(value, separators=(",", ":")))
        if self.producer.flush(30):
            raise RuntimeError("the calendar record was not delivered to Kafka")
