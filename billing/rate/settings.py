"""What the rater is told: its cluster, topic prefix, the usage worker's group, the grace period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

BILLING_CALENDAR = "billing.calendar"
"""The rater's record of its calendar (compacted, key ``subscription_id``)."""


@dataclass(frozen=True)
class RaterSettings:
    bootstrap_servers: str
    topic_prefix: str = ""
    usage_group: str = "billing-usage"
    """The usage worker's consumer group (its ``--app-id``): a period falls due only after it has
    committed everything produced to ``usage.events`` before."""
    sink_group: str = "billing-sink"
    grace_period: timedelta = timedelta(0)
    partitions: int = 6
    wait_s: float = 120.0
    """How long a close waits for the usage worker and the sink before trying again later."""

    def topic(self, name: str) -> str:
        return self.topic_prefix + name
