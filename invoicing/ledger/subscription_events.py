"""Subscription lifecycle events on ``subscription.events``, written to the outbox in the
transaction that changes the subscription (docs/outbox.md has the payload).

Unlike ``catalog.subscriptions`` (the newest state per subscription, compacted), this topic is a
log of what happened, kept for the broker's retention: ``SubscriptionCreated``,
``SubscriptionCanceled`` (also a cancel scheduled at period end or at an instant: ``effective_at``
says when it takes effect) and ``SubscriptionPlanChanged``. The key is the subscription id, so a
subscription's events keep their order; ``event_id`` (``<subscription_id>/<revision>``) is unique
and lets a consumer drop a redelivery.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from invoicing.engine.render import rfc3339_exact
from invoicing.ledger.json_codec import subscription_to_json
from invoicing.ports import OutboxMessage, SubscriptionRecord

SUBSCRIPTION_EVENTS: Final = "subscription.events"


class SubscriptionEvent(StrEnum):
    CREATED = "SubscriptionCreated"
    CANCELED = "SubscriptionCanceled"
    PLAN_CHANGED = "SubscriptionPlanChanged"


def _instant(value: datetime | None) -> str | None:
    return None if value is None else rfc3339_exact(value)


def subscription_event(kind: SubscriptionEvent, record: SubscriptionRecord, occurred_at: datetime) -> OutboxMessage:
    """The event announcing revision ``record`` (the state it leads to), requested at ``occurred_at``."""
    sub, life = record.subscription, record.lifecycle
    data: dict[str, Any]
    if kind is SubscriptionEvent.CREATED:
        data = {
            "plan_code": sub.plan_code,
            "plan_version": record.plan_version,
            "start_at": rfc3339_exact(sub.start_at),
            "trial_days": sub.trial_days,
            "trial_end_at": _instant(life.trial_end_at),
        }
    elif kind is SubscriptionEvent.CANCELED:
        data = {
            "cancel_at": _instant(life.cancel_at),
            "at_period_end": life.cancel_at_period_end,
            "reason": life.cancel_reason,
        }
    else:
        data = {
            "previous_plan_code": life.previous_plan_code,
            "previous_plan_version": life.previous_plan_version,
            "plan_code": sub.plan_code,
            "plan_version": record.plan_version,
        }
    payload = {
        "type": str(kind.value),
        "event_id": f"{sub.id}/{record.revision}",
        "subscription_id": sub.id,
        "tenant_id": sub.tenant_id,
        "revision": record.revision,
        "occurred_at": rfc3339_exact(occurred_at),
        "effective_at": rfc3339_exact(life.effective_at or sub.start_at),
        **data,
        "subscription": subscription_to_json(record),
    }
    return OutboxMessage(SUBSCRIPTION_EVENTS, sub.id, payload)
