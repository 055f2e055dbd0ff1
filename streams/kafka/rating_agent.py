"""The rating agent's output side: a closed period's final RatingResult onto ``rating.results``.

When the billing calendar closes a period, the agent reads the period's exact usage from the
usage store (buckets and raw edges: the exactness invariant of design section 3), prices it with
the plan snapshot, adds the current usage of earlier periods that received late usage (what they
billed comes from the ledger, the one record of what was invoiced) and publishes it, keyed by
subscription, for the invoice worker. Publishing twice is harmless: the invoice worker finalizes
at most one invoice per (subscription, period).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from fractions import Fraction
from typing import Any

from confluent_kafka import Producer

from invoicing.engine.subscriptions import BillingCycle, ClosedPeriod
from invoicing.ports import Ledger, UsageReader, UsageRequest
from invoicing.service import BillingTerms, InvoiceService
from rating.periods import Period
from rating.rate import RatingResult
from streams.kafka.producer import TUNING
from streams.kafka.rating_messages import FinalRating, LateUsage, final_rating, write_rating_result
from streams.kafka.topics import RATING_RESULTS


class RatingAgent:
    def __init__(
        self,
        bootstrap_servers: str,
        usage: UsageReader,
        ledger: Ledger,
        terms: BillingTerms,
        topic: str = RATING_RESULTS,
    ) -> None:
        self.usage = usage
        self.ledger = ledger
        self.terms = terms
        self.topic = topic
        self.pricing = InvoiceService(ledger, usage, terms)  # its usage reads and rating, nothing else
        self.producer = Producer({"bootstrap.servers": bootstrap_servers, **TUNING, "linger.ms": 0})
        self.published = 0
        self.current: dict[str, RatingResult] = {}
        """The running RatingResult of each subscription's open period: usage so far, priced."""

    def refresh(self, cycles: Iterable[BillingCycle], at: datetime) -> None:
        """Re-rate the open periods of ``cycles`` after their usage changed (one read for all):
        current usage and the charges it would bring (base fee and included units in full)."""
        periods = [
            ClosedPeriod(c.subscription, c.plan, c.period, Fraction(0 if c.is_trial else 1), c.is_trial, "open")
            for c in cycles
            if c.period is not None
        ]
        self.pricing.prefetch(periods)
        for p in periods:
            self.current[p.subscription.id] = self.pricing.rate(p.subscription, p.plan, p.period, p.share, at)

    def prefetch(self, closing: Collection[ClosedPeriod]) -> None:
        """Read the usage of many closing periods in one call to the store."""
        self.pricing.prefetch(closing)

    def _late_usage(self, subscription_id: str, late_periods: Collection[datetime]) -> list[LateUsage]:
        """Current usage of each metric the late periods billed (as the ledger recorded them)."""
        if not late_periods:
            return []
        with self.ledger.session() as session:
            billed = [b for b in session.billed_usage(subscription_id) if b.period_start in late_periods]
        metrics = self.terms.metrics
        requests = [
            UsageRequest(
                subscription_id, b.metric_code, metrics[b.metric_code].aggregation, b.period_start, b.period_end
            )
            for b in billed
        ]
        quantities = self.usage.quantities(requests)
        return [LateUsage(Period(r.start, r.end), r.metric_code, q) for r, q in zip(requests, quantities, strict=True)]

    def rate(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime] = ()
    ) -> FinalRating:
        """The final RatingResult of ``closed`` as of ``finalized_at``."""
        result = self.pricing.rate(closed.subscription, closed.plan, closed.period, closed.share, finalized_at)
        usage = {item.metric_code: item.quantity for item in result.items}
        late = self._late_usage(closed.subscription.id, late_periods)
        return final_rating(closed, self.terms, usage, finalized_at, late)

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
