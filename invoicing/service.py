"""The invoice service, in two steps as the architecture's InvoiceEngine: ``rate`` prices a closed
period's usage from the usage store (and ``late_usage`` reads what earlier periods received since),
``finalize`` turns a final rating into the stored invoice — compose, number, billed usage and the
``invoice.finalized`` outbox row in one ledger transaction, at most once per (subscription, period).
``close_period`` does both for the in-process paths; the invoice worker finalizes a message's rating."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from invoicing.engine.charges import period_charges
from invoicing.engine.compose import compose_invoice, finalize
from invoicing.engine.credit import CreditNote
from invoicing.engine.discount import Coupon
from invoicing.engine.model import Invoice, InvoiceLineItem, LineType
from invoicing.engine.render import invoice_to_dict, rfc3339
from invoicing.engine.subscriptions import ClosedPeriod, Subscription
from invoicing.engine.tax import rules_for
from invoicing.engine.terms import BillingTerms
from invoicing.ports import BilledUsage, Ledger, LedgerSession, OutboxMessage, UsageReader, UsageRequest
from rating.catalog import Plan
from rating.errors import InvalidValue, UnknownReference
from rating.late import LateUsage, late_usage_delta
from rating.money import Money, to_minor
from rating.numbers import format_decimal
from rating.periods import Period
from rating.rate import RatingResult, RatingResultItem, rate_meter, rate_period

INVOICE_FINALIZED = "invoice.finalized"


@dataclass(frozen=True, slots=True)
class _Draft:
    """A composed invoice and what finalizing it records beside it."""

    invoice: Invoice
    balance_used: Money
    billed: tuple[RatingResultItem, ...]
    rebilled: list[BilledUsage]


class InvoiceFinalizer:
    """Finalizes invoices from final ratings; reads no usage (the invoice worker's side)."""

    def __init__(self, ledger: Ledger, terms: BillingTerms) -> None:
        self.ledger = ledger
        self.terms = terms

    def add_credit_note(self, tenant_id: str, note: CreditNote) -> None:
        with self.ledger.session() as session:
            session.add_credit_note(tenant_id, note)

    def finalize(
        self,
        closed: ClosedPeriod,
        result: RatingResult | None,
        late_usage: Collection[LateUsage],
        finalized_at: datetime,
        check: Callable[[Invoice], None] | None = None,
    ) -> tuple[Invoice, bool]:
        """Compose, number and store the invoice of ``closed`` from its final rating (``result``,
        unused on a standalone adjustment invoice) and the current usage of late periods, with
        its billed usage and ``invoice.finalized`` outbox row, in one ledger session. Returns the
        invoice and whether it was created now; an invoice of the period that exists already is
        returned as it is (a redelivery writes nothing). ``check`` sees the composed draft before
        it takes a number: raising there stores nothing and takes no number."""
        subscription, plan = closed.subscription, closed.plan
        with self.ledger.session() as session:
            existing = session.find_invoice(subscription.id, closed.period.start)
            if existing is not None:
                return existing, False
            if session.get_plan(subscription.tenant_id, plan.code, plan.version) is None:
                session.keep_plan(subscription.tenant_id, plan)  # the rated version; a racing writer's stays
            draft = self._draft(session, closed, result, late_usage, finalized_at)
            if check is not None:
                check(draft.invoice)
            invoice = finalize(draft.invoice, session.next_invoice_sequence(subscription.tenant_id), finalized_at)
            assert invoice.invoice_number is not None
            session.add_invoice(invoice)
            if draft.balance_used.amount:
                session.use_credit(subscription.id, draft.balance_used, invoice.invoice_number)
            self._record_billed(session, closed, draft.billed, draft.rebilled)
            session.add_outbox(OutboxMessage(INVOICE_FINALIZED, subscription.id, invoice_to_dict(invoice)))
            return invoice, True

    def preview(
        self, closed: ClosedPeriod, result: RatingResult | None, late_usage: Collection[LateUsage], at: datetime
    ) -> Invoice:
        """The invoice ``finalize`` would store at ``at``, as a DRAFT without a number, storing
        nothing (a dry run); the stored invoice when the period was finalized already."""
        with self.ledger.session() as session:
            existing = session.find_invoice(closed.subscription.id, closed.period.start)
            if existing is not None:
                return existing
            return self._draft(session, closed, result, late_usage, at).invoice

    def _draft(
        self,
        session: LedgerSession,
        closed: ClosedPeriod,
        result: RatingResult | None,
        late_usage: Collection[LateUsage],
        at: datetime,
    ) -> _Draft:
        """Compose the invoice of ``closed`` from the ledger's state; reads only."""
        subscription, plan = closed.subscription, closed.plan
        adjustments, rebilled = self._late_usage(session, subscription, late_usage, plan.currency_code)
        if closed.is_adjustment and not adjustments:
            raise InvalidValue(
                "late_usage", f"{subscription.id}: no late usage changed since it was billed, nothing to invoice"
            )
        if not closed.is_adjustment and result is None:
            raise InvalidValue("result", f"{subscription.id}: a regular period is finalized from its rating")
        charges: list[InvoiceLineItem] = []
        billed: tuple[RatingResultItem, ...] = ()
        if result is not None and not closed.is_adjustment:
            charges += period_charges(closed, result)
            billed = result.items
        charges += adjustments
        coupon = self._coupon(session, subscription, closed.is_trial)
        balance = session.credit_balance(subscription.id, plan.currency_code)
        allowance = self._trial_allowance(closed, charges, plan.currency_code)
        metadata = {"closed_by": closed.reason, "rated_at": rfc3339(at)}
        draft = compose_invoice(
            tenant_id=subscription.tenant_id,
            subscription_id=subscription.id,
            plan_code=plan.code,
            period=closed.period,
            currency=plan.currency_code,
            charges=charges,
            coupon=coupon,
            tax_rules=rules_for(subscription.region_code, self.terms.tax_rules),
            tax_inclusive=plan.tax_inclusive,
            credit_available=balance + allowance,
            metadata=metadata,
        )
        trial_used = Money(min(allowance.amount, draft.credits_applied.amount), plan.currency_code)
        if closed.is_trial:  # the draft's own dict (a local value until finalize): no copy of it
            metadata["trial_credit"] = str(trial_used.amount)
        return _Draft(draft, draft.credits_applied - trial_used, billed, rebilled)

    @staticmethod
    def _record_billed(
        session: LedgerSession,
        closed: ClosedPeriod,
        billed: Sequence[RatingResultItem],
        rebilled: Sequence[BilledUsage],
    ) -> None:
        """What the invoice billed of each metric: the next late usage is measured against it."""
        subscription, plan = closed.subscription, closed.plan
        for item in billed:
            session.record_billed_usage(
                BilledUsage(
                    subscription.id,
                    closed.period.start,
                    closed.period.end,
                    item.metric_code,
                    item.quantity,
                    item.amount,
                    plan.code,
                    plan.version,
                    closed.share,
                    subscription.allow_overage_billing,
                )
            )
        for usage in rebilled:
            session.record_billed_usage(usage)

    def _coupon(self, session: LedgerSession, subscription: Subscription, is_trial: bool) -> Coupon | None:
        if is_trial or subscription.coupon_code is None:
            return None
        coupon = (self.terms.coupons or {}).get(subscription.coupon_code)
        if coupon is None:
            raise UnknownReference("coupon", f"no coupon {subscription.coupon_code!r}")
        return coupon if coupon.applies_to(session.discounted_invoice_count(subscription.id)) else None

    @staticmethod
    def _trial_allowance(closed: ClosedPeriod, charges: Sequence[InvoiceLineItem], currency: str) -> Money:
        """What the trial balance still covers on a trial invoice (unlimited without a balance)."""
        if not closed.is_trial:
            return Money.zero(currency)
        balance = closed.subscription.trial_balance
        if balance is None:
            return Money(10**30, currency)
        return Money(to_minor(balance, currency), currency)

    def _late_usage(
        self,
        session: LedgerSession,
        subscription: Subscription,
        late_usage: Collection[LateUsage],
        currency: str,
    ) -> tuple[list[InvoiceLineItem], list[BilledUsage]]:
        """ADJUSTMENT lines for finalized periods that received usage after they were invoiced:
        every metric those periods billed, re-rated at its quantity in ``late_usage``."""
        if not late_usage:
            return [], []
        current = {(u.metric_code, u.period.start, u.period.end): u.quantity for u in late_usage}
        late_starts = {u.period.start for u in late_usage}
        billed = [b for b in session.billed_usage(subscription.id) if b.period_start in late_starts]
        missing = [(b.metric_code, b.period_start, b.period_end) for b in billed]
        missing = [k for k in missing if k not in current]
        if missing:
            named = ", ".join(f"{m} of {subscription.id} [{a.isoformat()}, {b.isoformat()})" for m, a, b in missing)
            raise UnknownReference("late_usage", f"no late usage given for {named}")
        quantities = [current[(b.metric_code, b.period_start, b.period_end)] for b in billed]
        lines, rebilled = [], []
        for row, quantity in zip(billed, quantities, strict=True):
            plan = session.get_plan(subscription.tenant_id, row.plan_code, row.plan_version)
            meter = plan.meter(row.metric_code) if plan is not None else None
            if meter is None:
                raise UnknownReference("plan_code", f"plan {row.plan_code} v{row.plan_version} is not in the ledger")
            before = rate_meter(meter, row.quantity, currency, proration=row.share, allow_overage=row.allow_overage)
            now = rate_meter(meter, quantity, currency, proration=row.share, allow_overage=row.allow_overage)
            delta = late_usage_delta(replace(before, amount=row.amount), now)
            if delta is None:
                continue
            period = f"{rfc3339(row.period_start)} – {rfc3339(row.period_end)}"
            lines.append(
                InvoiceLineItem(
                    LineType.ADJUSTMENT,
                    f"Late usage: {row.metric_code} for {period}",
                    delta.amount,
                    delta.quantity - delta.billed_quantity,
                    None,
                    row.metric_code,
                    {
                        "period_start": rfc3339(row.period_start),
                        "period_end": rfc3339(row.period_end),
                        "billed_quantity": format_decimal(delta.billed_quantity),
                        "quantity": format_decimal(delta.quantity),
                    },
                )
            )
            rebilled.append(replace(row, quantity=quantity, amount=now.amount))
        return lines, rebilled


class InvoiceService(InvoiceFinalizer):
    """Rates closed periods from the usage store and finalizes them (the in-process paths, and
    the rating agent's pricing)."""

    def __init__(self, ledger: Ledger, usage: UsageReader, terms: BillingTerms) -> None:
        super().__init__(ledger, terms)
        self.usage = usage
        self._prefetched: dict[UsageRequest, Decimal] = {}

    def _requests(self, subscription_id: str, plan: Plan, period: Period) -> list[UsageRequest]:
        requests = []
        for meter in plan.meters:
            if not meter.is_metered:
                continue
            metric = self.terms.metrics.get(meter.metric_code)
            if metric is None:
                raise UnknownReference("metric_code", f"plan {plan.code} prices unknown metric {meter.metric_code!r}")
            requests.append(UsageRequest(subscription_id, metric.code, metric.aggregation, period.start, period.end))
        return requests

    def prefetch(self, closing: Collection[ClosedPeriod]) -> None:
        """Read the usage of many periods about to close in one call (one round trip to the store
        instead of one per invoice); the next ``close_period`` of each uses it once."""
        requests = [r for c in closing for r in self._requests(c.subscription.id, c.plan, c.period)]
        self._prefetched.update(zip(requests, self.usage.quantities(requests), strict=True))

    def _quantities(self, subscription_id: str, plan: Plan, period: Period) -> dict[str, Decimal]:
        requests = self._requests(subscription_id, plan, period)
        missing = [r for r in requests if r not in self._prefetched]
        if missing:
            self._prefetched.update(zip(missing, self.usage.quantities(missing), strict=True))
        return {r.metric_code: self._prefetched.pop(r) for r in requests}

    def rate(
        self, subscription: Subscription, plan: Plan, period: Period, share: Fraction, at: datetime
    ) -> RatingResult:
        """The RatingResult of a period: its usage priced by the plan snapshot."""
        usage = self._quantities(subscription.id, plan, period)
        return rate_period(
            subscription.id,
            plan,
            period,
            usage,
            rated_at=at,
            proration=share,
            allow_overage=subscription.allow_overage_billing,
        )

    def late_usage(self, subscription: Subscription, late_periods: Collection[datetime] | None) -> list[LateUsage]:
        """Current usage of each metric the late periods billed (as the ledger recorded them);
        ``None`` means every finalized period. Periods whose usage did not change are left out; a
        changed period comes with all its billed metrics, as :meth:`finalize` re-rates them all."""
        if late_periods is not None and not late_periods:
            return []
        with self.ledger.session() as session:
            billed = [
                b
                for b in session.billed_usage(subscription.id)
                if late_periods is None or b.period_start in late_periods
            ]
        requests = []
        for row in billed:
            metric = self.terms.metrics.get(row.metric_code)
            if metric is None:
                raise UnknownReference("terms.metrics", f"no metric {row.metric_code!r} (billed before, late now)")
            requests.append(
                UsageRequest(subscription.id, row.metric_code, metric.aggregation, row.period_start, row.period_end)
            )
        quantities = self.usage.quantities(requests)
        changed = {b.period_start for q, b in zip(quantities, billed, strict=True) if q != b.quantity}
        return [
            LateUsage(Period(r.start, r.end), r.metric_code, q)
            for r, q in zip(requests, quantities, strict=True)
            if r.start in changed
        ]

    def close_period(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime] = ()
    ) -> Invoice:
        """Rate ``closed`` from the usage store and finalize its invoice (the existing one when it
        was finalized already). A standalone adjustment invoice (``closed.is_adjustment``) without
        any late usage that changed is an error: there is nothing to invoice."""
        result = None
        if not closed.is_adjustment:  # an adjustment invoice's period is after the end: nothing to rate
            result = self.rate(closed.subscription, closed.plan, closed.period, closed.share, finalized_at)
        late = self.late_usage(closed.subscription, late_periods)
        invoice, _created = self.finalize(closed, result, late, finalized_at)
        return invoice

    def close_late_usage(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime]
    ) -> Invoice | None:
        """The standalone adjustment invoice of an ended subscription (ADJUSTMENT lines only, no
        recurring fee); None when no late period's usage changed."""
        late = self.late_usage(closed.subscription, late_periods)
        if not late:
            return None
        invoice, _created = self.finalize(closed, None, late, finalized_at)
        return invoice
