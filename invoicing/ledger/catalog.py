"""The catalog as the ledger stores and announces it: plan versions and subscriptions.

Saving a plan version or a subscription writes its row and an outbox message in the same
transaction (no dual write); the outbox relay (streams/kafka/relay.py) publishes the message to a
compacted topic, where the newest record per key is the current state:

* ``catalog.plans``, key ``tenant_id/plan_code/version``: plan versions are immutable snapshots
  that invoices of older periods are still priced with, so every version keeps its own key (a key
  per plan code would let compaction drop the versions subscriptions still reference). The value
  is the snapshot of invoicing/ledger/snapshots.py with ``tenant_id`` in front.
* ``catalog.subscriptions``, key ``subscription_id`` (unique across tenants, like the invoices'
  one-per-period constraint assumes). The value is :func:`subscription_to_json`.
* ``catalog.terms``, key ``tenant_id``: the tenant's metrics, tax rules and coupons, one record with
  all of them. The value is :func:`terms_record_to_json`: ``terms_to_json`` of
  invoicing/ledger/snapshots.py with a ``revision`` that grows with every change.

A save that changes nothing writes no message, so re-running a seed or a finalization that
re-saves its plan adds nothing to the topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from invoicing.engine.subscriptions import Subscription, SubscriptionStatus
from invoicing.ledger.snapshots import terms_from_json, terms_to_json
from invoicing.service import BillingTerms
from rating.errors import InvalidValue
from rating.periods import BillingInterval

CATALOG_PLANS: Final = "catalog.plans"
CATALOG_SUBSCRIPTIONS: Final = "catalog.subscriptions"
CATALOG_TERMS: Final = "catalog.terms"


def plan_key(tenant_id: str, code: str, version: int) -> str:
    return f"{tenant_id}/{code}/{version}"


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A subscription as the catalog holds it: the engine's value, the plan version it is on (and
    that version's billing interval), its status, and a revision that grows with every change."""

    subscription: Subscription
    plan_version: int
    billing_interval: BillingInterval
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    revision: int = 1

    @property
    def id(self) -> str:
        return self.subscription.id


def _instant(value: datetime) -> str:
    """RFC 3339 UTC with every microsecond, so the instant reads back exactly."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def subscription_to_json(record: SubscriptionRecord) -> dict[str, Any]:
    """The ``catalog.subscriptions`` value: plain JSON, decimals as strings, instants RFC 3339 UTC."""
    sub = record.subscription
    return {
        "id": sub.id,
        "tenant_id": sub.tenant_id,
        "plan_code": sub.plan_code,
        "plan_version": record.plan_version,
        "billing_interval": str(record.billing_interval.value),
        "start_at": _instant(sub.start_at),
        "timezone": sub.timezone,
        "region_code": sub.region_code,
        "allow_overage_billing": sub.allow_overage_billing,
        "trial_days": sub.trial_days,
        "trial_balance": None if sub.trial_balance is None else str(sub.trial_balance),
        "has_payment_method": sub.has_payment_method,
        "coupon_code": sub.coupon_code,
        "status": str(record.status.value),
        "revision": record.revision,
    }


def subscription_from_json(raw: dict[str, Any]) -> SubscriptionRecord:
    """The record of a ``catalog.subscriptions`` value (what a worker's table holds)."""
    balance = raw["trial_balance"]
    subscription = Subscription(
        id=raw["id"],
        tenant_id=raw["tenant_id"],
        plan_code=raw["plan_code"],
        start_at=datetime.fromisoformat(raw["start_at"]),
        timezone=raw["timezone"],
        region_code=raw["region_code"],
        allow_overage_billing=raw["allow_overage_billing"],
        trial_days=raw["trial_days"],
        trial_balance=None if balance is None else Decimal(balance),
        has_payment_method=raw["has_payment_method"],
        coupon_code=raw["coupon_code"],
    )
    return SubscriptionRecord(
        subscription,
        raw["plan_version"],
        BillingInterval(raw["billing_interval"]),
        SubscriptionStatus(raw["status"]),
        raw["revision"],
    )


@dataclass(frozen=True, slots=True)
class TermsRecord:
    """A tenant's terms as the catalog holds them, and a revision that grows with every change."""

    terms: BillingTerms
    revision: int = 1

    @property
    def tenant_id(self) -> str:
        return self.terms.tenant_id


def terms_record_to_json(record: TermsRecord) -> dict[str, Any]:
    """The ``catalog.terms`` value: ``{**terms_to_json(terms), "revision": n}``."""
    return {**terms_to_json(record.terms), "revision": record.revision}


def terms_record_from_json(raw: dict[str, Any], at: str = "terms") -> TermsRecord:
    """The record of a ``catalog.terms`` value, checked: a bad value is an error naming its field."""
    revision = raw.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise InvalidValue(f"{at}.revision", f"expected a whole number from 1, got {revision!r}")
    return TermsRecord(terms_from_json(raw, at), revision)
