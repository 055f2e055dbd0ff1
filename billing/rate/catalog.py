"""The catalog as the rater holds it, from the compacted catalog topics."""

from __future__ import annotations

from billing.rate.settings import RaterSettings
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.catalog import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS, plan_key
from invoicing.ports import SubscriptionRecord, TermsRecord
from rating.catalog import Plan
from streams.kafka.catalog_tables import CatalogTopics


class RaterCatalog(CatalogTopics):
    """The catalog as the rater holds it: each tenant's terms, every plan version and the newest
    record of each subscription, read by the rules of streams/kafka/catalog_tables.py."""

    def __init__(self, settings: RaterSettings) -> None:
        self.terms: dict[str, BillingTerms] = {}
        self.plans: dict[str, Plan] = {}
        """By ``plan_key``: every version, as subscriptions may be on any."""
        self.subscriptions: dict[str, SubscriptionRecord] = {}
        self.arrived: list[SubscriptionRecord] = []
        """Subscription records applied since :meth:`take_arrived`."""
        topics = {settings.topic(t): t for t in (CATALOG_TERMS, CATALOG_PLANS, CATALOG_SUBSCRIPTIONS)}
        super().__init__(settings.bootstrap_servers, topics, settings.partitions, catch_up_timeout_s=60.0)

    def hold_subscription(self, record: SubscriptionRecord) -> None:
        self.subscriptions[record.id] = record
        self.arrived.append(record)

    def hold_terms(self, record: TermsRecord) -> None:
        self.terms[record.tenant_id] = record.terms

    def hold_plan(self, key: str, tenant_id: str, plan: Plan) -> None:
        self.plans[key] = plan

    def drop(self, kind: str, key: str) -> None:
        if kind == CATALOG_TERMS:
            self.terms.pop(key, None)
        elif kind == CATALOG_PLANS:
            self.plans.pop(key, None)
        else:
            self.subscriptions.pop(key, None)

    def take_arrived(self) -> list[SubscriptionRecord]:
        arrived, self.arrived = self.arrived, []
        return arrived

    def poll(self) -> list[SubscriptionRecord]:
        """Apply what has arrived; returns the subscription records among it."""
        self.refresh()
        return self.take_arrived()

    def plan_of(self, record: SubscriptionRecord) -> Plan | None:
        sub = record.subscription
        return self.plans.get(plan_key(sub.tenant_id, sub.plan_code, record.plan_version))
