"""The caller's subscription, as every RPC that names one looks it up: with its plan version and
its tenant's terms, or NOT_FOUND, for another tenant's subscription exactly as for an unknown id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from billing.api import wire
from invoicing.engine.terms import BillingTerms
from invoicing.ports import Ledger, SubscriptionRecord
from rating.catalog import Plan


@dataclass(frozen=True, slots=True)
class Owned:
    record: SubscriptionRecord
    plan: Plan
    terms: BillingTerms
    """The tenant's terms; empty (no metrics, taxes or coupons) when it has none stored."""


def owned_subscription(context: Any, ledger: Ledger, tenant: str, subscription_id: str) -> Owned:
    """``subscription_id`` of ``tenant`` with its plan and terms, read in one ledger session."""
    if not subscription_id:
        wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id: is required")
    with ledger.session() as session:
        record = session.get_subscription(subscription_id)
        plan = terms = None
        if record is not None and record.subscription.tenant_id == tenant:
            plan = session.get_plan(tenant, record.subscription.plan_code, record.plan_version)
            terms = session.get_terms(tenant)
    if record is None or plan is None:
        wire.abort(context, grpc.StatusCode.NOT_FOUND, f"subscription_id: no subscription {subscription_id!r}")
    return Owned(record, plan, BillingTerms(tenant, {}) if terms is None else terms.terms)
