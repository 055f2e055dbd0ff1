"""The trial balance as ``BillingService`` answers it: what the trial's usage cost, priced exactly
as the rater prices it when it decides that a trial's balance is used up
(``invoicing.engine.trials.trial_used_up_at``: the usage since the trial's start, without base fee
or included units, rounded per line), and what one more event would add (``RecordUsage``).

One more event is added to the stored quantities by its metric's aggregation (SUM adds its value,
COUNT one, MAX keeps the larger); a metric aggregated otherwise (LATEST, UNIQUE_COUNT,
TIME_WEIGHTED_SUM) depends on events the answer cannot see in order, so RecordUsage refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from invoicing.engine.subscriptions import Subscription
from invoicing.engine.terms import BillingTerms
from invoicing.ports import Ledger, UsageReader, UsageRequest
from invoicing.service import InvoiceService
from rating.catalog import Aggregation, Plan
from rating.periods import Period

ADDABLE = (Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX)


@dataclass(frozen=True, slots=True)
class Pending:
    """An event not in the store yet."""

    subscription_id: str
    metric_code: str
    value: Decimal
    recorded_at: datetime


class WithPending:
    """The store's quantities with one pending event added by its metric's aggregation; or, with
    ``removed``, one stored event taken out (a replay's answer: SUM and COUNT exactly; a MAX
    cannot forget a value, so it stays)."""

    def __init__(self, reader: UsageReader, pending: Pending, removed: bool = False) -> None:
        self.reader, self.pending, self.removed = reader, pending, removed

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        stored = self.reader.quantities(requests)
        p, out = self.pending, []
        for request, quantity in zip(requests, stored, strict=True):
            if (request.subscription_id, request.metric_code) == (p.subscription_id, p.metric_code) and (
                request.start <= p.recorded_at < request.end
            ):
                sign = -1 if self.removed else 1
                if request.aggregation is Aggregation.SUM:
                    quantity += sign * p.value
                elif request.aggregation is Aggregation.COUNT:
                    quantity += sign
                elif request.aggregation is Aggregation.MAX:
                    quantity = quantity if self.removed else max(quantity, p.value)
                else:  # pragma: no cover - refused before
                    raise AssertionError(f"{request.aggregation} is not addable")
            out.append(quantity)
        return out


def usage_cost(
    ledger: Ledger,
    reader: UsageReader,
    terms: BillingTerms,
    subscription: Subscription,
    plan: Plan,
    period: Period,
    share: Fraction,
) -> int:
    """What the period's usage costs in minor units: every usage line, no base fee; ``share`` 0
    (a trial: no included units) or 1 (an open period, as the running result prices it)."""
    rated = InvoiceService(ledger, reader, terms).rate(subscription, plan, period, share, period.end)
    return sum(item.amount.amount for item in rated.items)
