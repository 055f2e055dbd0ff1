"""The rating agent's output side: a closed period's final RatingResult onto ``rating.results``.

When the billing calendar closes a period, the agent reads the period's exact usage from the
usage store (buckets and raw edges: the exactness invariant of design section 3), prices it with
the plan snapshot, adds the current usage of earlier periods that received late usage (what they
billed comes from the ledger, the one record of what was invoiced) and publishes it, keyed by
subscription, for the invoice worker. Publishing twice is harmless: the invoice worker finalizes
at most one invoice per (subscription, period).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from fractions import Fraction
from typing import Any

from confluent_kafka import Producer

from billing.rate.messages import FinalRating, final_rating, write_rating_result
from invoicing.engine.charges import rate_closed
from invoicing.engine.subscriptions import BillingCycle, ClosedPeriod
from invoicing.engine.terms import BillingTerms
from invoicing.ports import Ledger, UsageReader
from invoicing.service import InvoiceService
from rating.rate import RatingResult
from streams.ingest.producer import TUNING
from streams.kafka.security import client_config
from streams.kafka.topics import RATING_RESULTS


class RatingAgent:
    def __init__(
        self,
        bootstrap_servers: str,
        usage: UsageReader,
        ledger: Ledger,
        terms: BillingTerms | Callable[[str], BillingTerms],
        topic: str = RATING_RESULTS,
    ) -> None:
        self.usage = usage
        self.ledger = ledger
        self.terms_of: Callable[[str], BillingTerms] = terms if callable(terms) else (lambda _tenant: terms)
        """A tenant's current terms (the rater's catalog, or the one tenant of a scenario)."""
        self.topic = topic
        self._pricing: dict[str, InvoiceService] = {}
        self.producer = Producer(client_config(bootstrap_servers, TUNING, {"linger.ms": 0}))
        self.published = 0
        self.current: dict[str, RatingResult] = {}
        """The running RatingResult of each subscription's open period: usage so far, priced."""

    def pricing(self, tenant_id: str) -> InvoiceService:
        """The invoice service of the tenant's current terms: its usage reads and rating, nothing else."""
        terms = self.terms_of(tenant_id)
        service = self._pricing.get(tenant_id)
        if service is None or service.terms is not terms:
            service = self._pricing[tenant_id] = InvoiceService(self.ledger, self.usage, terms)
        return service

    def refresh(self, cycles: Iterable[BillingCycle], at: datetime) -> None:
        """Re-rate the open periods of ``cycles`` after their usage changed (one read for all):
        current usage and the charges it would bring (base fee and included units in full)."""
        periods = [
            ClosedPeriod(c.subscription, c.plan, c.period, Fraction(0 if c.is_trial else 1), c.is_trial, "open")
            for c in cycles
            if c.period is not None
        ]
        self.prefetch(periods)
        for p in periods:
            pricing = self.pricing(p.subscription.tenant_id)
            self.current[p.subscription.id] = pricing.rate(p.subscription, p.plan, p.period, p.share, at)

    def prefetch(self, closing: Collection[ClosedPeriod]) -> None:
        """Read the usage of many closing periods in one call to the store per tenant."""
        by_tenant: dict[str, list[ClosedPeriod]] = defaultdict(list)
        for closed in closing:
            by_tenant[closed.subscription.tenant_id].append(closed)
        for tenant_id, periods in by_tenant.items():
            self.pricing(tenant_id).prefetch(periods)

    def rate(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime] | None = ()
    ) -> FinalRating:
        """The final RatingResult of ``closed`` as of ``finalized_at``; ``late_periods=None``
        looks for late usage in every period the ledger billed (the rater keeps no memory of it).
        A standalone adjustment invoice (``closed.is_adjustment``) rates no usage of its own: its
        period lies after the subscription's end; publish it only when it carries late usage."""
        sub = closed.subscription
        pricing = self.pricing(sub.tenant_id)
        period = closed.period
        if closed.is_adjustment:  # no usage of its own: its meters at zero, rated for the message's shape
            result = rate_closed(closed, {}, finalized_at)
        else:
            result = pricing.rate(sub, closed.plan, period, closed.share, finalized_at)
        return final_rating(closed, pricing.terms, result, pricing.late_usage(sub, late_periods))

    def publish(self, rating: FinalRating) -> None:
        """Send and wait until the broker has it (acks=all): a period is handed over only then."""
        errors: list[Any] = []
        self.producer.produce(
            self.topic,
            key=rating.closed.subscription.id.encode(),
            value=write_rating_result(rating),
            on_delivery=lambda error, _message: errors.append(error) if error is not None else None,
        )
        if self.producer.flush(30) or errors:
            raise RuntimeError(f"rating result of {rating.closed.subscription.id} not delivered: {errors or 'timeout'}")
        self.published += 1
