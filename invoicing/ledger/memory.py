"""In-memory ledger for ``billing simulate``: a transaction works on a copy that replaces the
state only on commit, so it honours the same contract as PostgreSQL (tests/contract)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.model import Invoice, LineType
from invoicing.engine.subscriptions import Lifecycle, Subscription, SubscriptionStatus, lifecycle_of
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.catalog import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS, plan_key, plan_version_for
from invoicing.ledger.json_codec import plan_to_json, subscription_to_json, terms_from_json, terms_to_json
from invoicing.ports import BilledUsage, OutboxMessage, SubscriptionRecord, SubscriptionRevision, TermsRecord
from rating.catalog import Plan
from rating.errors import InvalidValue, UnknownReference
from rating.money import Money


@dataclass
class _State:
    invoices: dict[tuple[str, datetime], Invoice] = field(default_factory=dict)
    order: list[tuple[str, datetime]] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    credits: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    notes: list[CreditNote] = field(default_factory=list)
    billed: dict[tuple[str, datetime, str], BilledUsage] = field(default_factory=dict)
    plans: dict[tuple[str, str, int], Plan] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    subscriptions: dict[str, SubscriptionRecord] = field(default_factory=dict)
    revisions: dict[str, list[SubscriptionRevision]] = field(default_factory=dict)
    # tenant → (its terms as stored, never mutated, and their revision)
    terms: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict)

    def copy(self) -> _State:
        """A working copy for one transaction; values are frozen, so copying containers is enough."""
        sequences: dict[str, int] = defaultdict(int, self.sequences)
        credits: dict[str, list[tuple[int, str]]] = defaultdict(list, {k: list(v) for k, v in self.credits.items()})
        return _State(
            dict(self.invoices),
            list(self.order),
            sequences,
            credits,
            list(self.notes),
            dict(self.billed),
            dict(self.plans),
            list(self.outbox),
            dict(self.subscriptions),
            {k: list(v) for k, v in self.revisions.items()},
            dict(self.terms),
        )


class MemoryLedgerSession:
    def __init__(self, state: _State) -> None:
        self.state = state

    # -- invoices and numbering (InvoiceSession) ---------------------------------------------------

    def find_invoice(self, subscription_id: str, period_start: datetime) -> Invoice | None:
        return self.state.invoices.get((subscription_id, period_start))

    def next_invoice_sequence(self, tenant_id: str) -> int:
        self.state.sequences[tenant_id] += 1
        return self.state.sequences[tenant_id]

    def add_invoice(self, invoice: Invoice) -> None:
        if invoice.key in self.state.invoices:
            raise InvalidValue(
                "billing_period_start", f"subscription {invoice.subscription_id} has that period's invoice"
            )
        self.state.invoices[invoice.key] = invoice
        self.state.order.append(invoice.key)

    def list_invoices(self, tenant_id: str, subscription_id: str | None = None) -> list[Invoice]:
        found = (self.state.invoices[key] for key in self.state.order)
        return [
            i
            for i in found
            if i.tenant_id == tenant_id and (subscription_id is None or i.subscription_id == subscription_id)
        ]

    def discounted_invoice_count(self, subscription_id: str) -> int:
        return sum(
            1
            for (sub, _), invoice in self.state.invoices.items()
            if sub == subscription_id and any(line.type is LineType.DISCOUNT for line in invoice.line_items)
        )

    # -- credit (CreditSession) --------------------------------------------------------------------

    def credit_balance(self, subscription_id: str, currency: str) -> Money:
        return Money(sum(amount for amount, c in self.state.credits[subscription_id] if c == currency), currency)

    def add_credit_note(self, tenant_id: str, note: CreditNote) -> None:
        self.state.notes.append(note)
        if note.type is CreditType.BALANCE:
            self.state.credits[note.subscription_id].append((note.amount.amount, note.amount.currency))

    def use_credit(self, subscription_id: str, amount: Money, invoice_number: str) -> None:
        if self.credit_balance(subscription_id, amount.currency).amount < amount.amount:
            raise InvalidValue("credits_applied", f"subscription {subscription_id} has less credit than {amount}")
        self.state.credits[subscription_id].append((-amount.amount, amount.currency))

    # -- billed usage (BilledUsageSession) ---------------------------------------------------------

    def billed_usage(self, subscription_id: str) -> list[BilledUsage]:
        return sorted(
            (b for (sub, _, _), b in self.state.billed.items() if sub == subscription_id),
            key=lambda b: (b.period_start, b.metric_code),
        )

    def record_billed_usage(self, usage: BilledUsage) -> None:
        self.state.billed[(usage.subscription_id, usage.period_start, usage.metric_code)] = usage

    # -- catalog: plans, subscriptions, terms (CatalogSession) -------------------------------------

    def save_plan(self, tenant_id: str, plan: Plan) -> None:
        key = (tenant_id, plan.code, plan.version)
        if self.state.plans.get(key) != plan:
            self.state.plans[key] = plan
            snapshot = {"tenant_id": tenant_id, **plan_to_json(plan)}
            self.add_outbox(OutboxMessage(CATALOG_PLANS, plan_key(*key), snapshot))

    def keep_plan(self, tenant_id: str, plan: Plan) -> None:
        if (tenant_id, plan.code, plan.version) not in self.state.plans:
            self.save_plan(tenant_id, plan)

    def save_plan_version(self, tenant_id: str, plan: Plan) -> tuple[int, bool]:
        version, is_new = plan_version_for(plan, self.get_plan(tenant_id, plan.code))
        if is_new:
            self.save_plan(tenant_id, replace(plan, version=version))
        return version, is_new

    def get_plan(self, tenant_id: str, code: str, version: int | None = None) -> Plan | None:
        if version is None:
            versions = [v for (t, c, v) in self.state.plans if t == tenant_id and c == code]
            if not versions:
                return None
            version = max(versions)
        return self.state.plans.get((tenant_id, code, version))

    def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        return self.state.subscriptions.get(subscription_id)

    def subscription_revisions(self, subscription_id: str) -> list[SubscriptionRevision]:
        return list(self.state.revisions.get(subscription_id, ()))

    def save_subscription(
        self,
        subscription: Subscription,
        plan_version: int | None = None,
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
        lifecycle: Lifecycle | None = None,
        recorded_at: datetime | None = None,
    ) -> SubscriptionRecord:
        """As the PostgreSQL ledger saves it; this ledger has no clock of its own, so a revision
        saved without ``recorded_at`` is recorded at its ``effective_at`` (else its start)."""
        life = lifecycle_of(subscription) if lifecycle is None else lifecycle
        plan = self.get_plan(subscription.tenant_id, subscription.plan_code, plan_version)
        if plan is None:
            version = "" if plan_version is None else f" version {plan_version}"
            raise UnknownReference(
                "plan_code", f"tenant {subscription.tenant_id} has no plan {subscription.plan_code!r}{version}"
            )
        stored = self.state.subscriptions.get(subscription.id)
        if stored is not None:
            if stored.subscription.tenant_id != subscription.tenant_id:
                raise InvalidValue("tenant_id", f"subscription {subscription.id} belongs to another tenant")
            if (stored.subscription, stored.plan_version, stored.status, stored.lifecycle) == (
                subscription,
                plan.version,
                status,
                life,
            ):
                return stored
        revision = 1 if stored is None else stored.revision + 1
        record = SubscriptionRecord(subscription, plan.version, plan.billing_interval, status, revision, life)
        self.state.subscriptions[subscription.id] = record
        saved_at = recorded_at or life.effective_at or subscription.start_at
        self.state.revisions.setdefault(subscription.id, []).append(SubscriptionRevision(record, saved_at))
        self.add_outbox(OutboxMessage(CATALOG_SUBSCRIPTIONS, subscription.id, subscription_to_json(record)))
        return record

    def get_terms(self, tenant_id: str) -> TermsRecord | None:
        stored = self.state.terms.get(tenant_id)
        return None if stored is None else TermsRecord(terms_from_json(stored[0]), stored[1])

    def save_terms(self, terms: BillingTerms) -> TermsRecord:
        value = terms_to_json(terms)
        saved = terms_from_json(value)
        stored = self.state.terms.get(terms.tenant_id)
        if stored is not None and stored[0] == value:
            return TermsRecord(terms_from_json(stored[0]), stored[1])
        revision = 1 if stored is None else stored[1] + 1
        self.state.terms[terms.tenant_id] = (value, revision)
        self.add_outbox(OutboxMessage(CATALOG_TERMS, terms.tenant_id, {**value, "revision": revision}))
        return TermsRecord(saved, revision)

    # -- outbox (OutboxSession) --------------------------------------------------------------------

    def add_outbox(self, message: OutboxMessage) -> None:
        self.state.outbox.append(message)


class _Batch(threading.local):
    """The working state of the batch this thread has open, if any."""

    state: _State | None = None


class MemoryLedger:
    def __init__(self) -> None:
        self.state = _State()
        self._batch = _Batch()

    def check_reachable(self) -> None:
        """Always reachable: the state is in this process."""

    @contextmanager
    def session(self) -> Iterator[MemoryLedgerSession]:
        batch = self._batch.state
        working = (self.state if batch is None else batch).copy()
        yield MemoryLedgerSession(working)
        if batch is None:
            self.state = working
        else:
            self._batch.state = working

    @contextmanager
    def batch(self, periods: Sequence[tuple[str, datetime]] = ()) -> Iterator[None]:
        """One transaction for every session this thread opens inside the block: they work on one
        copy of the state, which replaces it when the block ends without an error. ``periods``
        changes nothing here: every read is in memory already."""
        if self._batch.state is not None:
            raise RuntimeError("ledger batches do not nest")
        self._batch.state = self.state.copy()
        try:
            yield
            self.state = self._batch.state
        finally:
            self._batch.state = None
