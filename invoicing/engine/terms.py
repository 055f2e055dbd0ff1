"""A tenant's billing terms: the rules beside its plans that pricing an invoice needs, and its
payment terms (net days, the dunning schedule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from invoicing.engine.discount import Coupon
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.tax import TaxRule
from rating.catalog import Metric


@dataclass(frozen=True, slots=True)
class BillingTerms:
    """A tenant's rules beside its plans: metrics, tax rules, coupons and payment terms."""

    tenant_id: str
    metrics: Mapping[str, Metric]
    tax_rules: Sequence[TaxRule] = ()
    coupons: Mapping[str, Coupon] | None = None
    payment_terms: PaymentTerms = field(default_factory=PaymentTerms)
