"""Final ratings built from quantities, as the rating agent builds them from the usage store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from billing.rate.messages import FinalRating, final_rating
from invoicing.engine.charges import rate_closed
from invoicing.engine.subscriptions import ClosedPeriod
from invoicing.engine.terms import BillingTerms
from rating.late import LateUsage


def final_rating_of_usage(
    closed: ClosedPeriod,
    terms: BillingTerms,
    usage: Mapping[str, Decimal],
    finalized_at: datetime,
    late_usage: Iterable[LateUsage] = (),
) -> FinalRating:
    """Rate ``closed`` on ``usage`` (quantity per metric; absent metrics count as 0) at
    ``finalized_at``, as ``InvoiceService.rate`` does, and make it the period's message."""
    result = rate_closed(closed, usage, finalized_at)
    return final_rating(closed, terms, result, late_usage)
