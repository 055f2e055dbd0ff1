"""``smallbiznis.invoice_engine.v1.InvoiceEngineService``: the engine's steps one at a time.

Each served RPC is one engine function on the request's values, the same function
``compose_invoice`` calls, so a client chaining them gets the lines and totals the loop's invoice
would carry: ``RunProration`` (``base_fee_line`` over the exact share of seconds), ``ApplyDiscount``
(``discount_line``), ``ApplyTax`` (``rules_for`` + ``tax_lines`` on subtotal − discount) and
``ApplyCredit`` (``apply_credit`` on the subscription's BALANCE credit), ``BuildChargesFromRating``
(``base_fee_line`` + ``usage_lines`` on a RatingResult as ``RateSubscription`` answers it). They
store nothing. The
subscription names the tenant's terms (coupons, tax rules, metrics) and the currency; another
tenant's subscription is NOT_FOUND.

The steps that touch the ledger (``BuildInvoice``, ``FinalizeInvoice``, ``GenerateInvoiceNumber``,
``Open/CloseBillingPeriod``) are mapped onto what the ledger keeps in billing/api/engine_ledger.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import grpc

from billing.api import engine_wire as ew
from billing.api import wire
from billing.api.engine_ledger import EngineLedgerSteps
from billing.api.owned import owned_subscription
from invoicing.engine.charges import base_fee_line, usage_lines
from invoicing.engine.credit import apply_credit
from invoicing.engine.discount import discount_line
from invoicing.engine.model import SUBTOTAL_TYPES
from invoicing.engine.tax import rules_for, tax_lines
from invoicing.engine.terms import BillingTerms
from invoicing.ports import Ledger
from rating.errors import InvalidValue
from rating.money import Money
from rating.numbers import format_decimal
from rating.periods import Period, proration
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2 as E
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2_grpc


@dataclass(frozen=True, slots=True)
class _Context:
    """What a subscription brings to a step: its tenant's terms and its plan's currency."""

    subscription_id: str
    currency: str
    terms: BillingTerms


def _not_negative(amount: Money, field: str) -> Money:
    if amount.amount < 0:
        raise InvalidValue(f"{field}.units", f"must not be negative, got {amount.amount}")
    return amount


class InvoiceEngineServicer(invoice_engine_pb2_grpc.InvoiceEngineServiceServicer):
    def __init__(self, ledger: Ledger, steps: EngineLedgerSteps) -> None:
        self.ledger = ledger
        self.steps = steps

    def BuildInvoice(self, request: E.BuildInvoiceRequest, context: Any) -> E.BuildInvoiceResponse:
        """The invoice of one ended period, composed as finalization would, stored nowhere."""
        return self.steps.build_invoice(request, context)

    def FinalizeInvoice(self, request: E.FinalizeInvoiceRequest, context: Any) -> E.FinalizeInvoiceResponse:
        """The period's invoice finalized, when the request's components are the ledger's own."""
        return self.steps.finalize_invoice(request, context)

    def GenerateInvoiceNumber(
        self, request: E.GenerateInvoiceNumberRequest, context: Any
    ) -> E.GenerateInvoiceNumberResponse:
        """The number the tenant's next invoice gets; nothing is taken."""
        return self.steps.generate_invoice_number(request, context)

    def OpenBillingPeriod(self, request: E.OpenBillingPeriodRequest, context: Any) -> E.OpenBillingPeriodResponse:
        """The calendar's period holding now, when it is the one asked for."""
        return self.steps.open_billing_period(request, context)

    def CloseBillingPeriod(self, request: E.CloseBillingPeriodRequest, context: Any) -> E.CloseBillingPeriodResponse:
        """An ended period closed: its invoice finalized (INVOICED)."""
        return self.steps.close_billing_period(request, context)

    def _subscription(self, context: Any, request: Any) -> _Context:
        tenant = wire.tenant(context, request.tenant_id)
        owned = owned_subscription(context, self.ledger, tenant, request.subscription_id)
        return _Context(request.subscription_id, owned.plan.currency_code, owned.terms)

    def BuildChargesFromRating(
        self, request: E.BuildChargesFromRatingRequest, context: Any
    ) -> E.BuildChargesFromRatingResponse:
        """The lines a period's rating puts on its invoice (``period_charges``): the snapshot's base
        fee times the rating's proration (none when it is 0: a trial), then its USAGE lines."""
        sub = self._subscription(context, request)
        with wire.errors_as_status(context):
            if not request.HasField("plan_snapshot"):
                raise InvalidValue("plan_snapshot", "is required")
            if not request.HasField("rating_result"):
                raise InvalidValue("rating_result", "is required")
            plan = ew.plan_in(request.plan_snapshot, sub.terms.metrics)
            if plan.currency_code != sub.currency:
                raise InvalidValue("plan_snapshot.currency_code", f"must be the subscription's {sub.currency}")
            result = ew.rating_in(request.rating_result, plan.currency_code)
            if result.subscription_id != sub.subscription_id:
                raise InvalidValue("rating_result.subscription_id", "must be the request's subscription_id")
            if (result.plan_code, result.plan_version) != (plan.code, plan.version):
                raise InvalidValue("rating_result.plan_code", "the rating was priced by another plan than the snapshot")
            priced = {m.metric_code for m in plan.meters if m.is_metered}
            for index, item in enumerate(result.items):
                if item.metric_code not in priced:
                    raise InvalidValue(f"rating_result.items[{index}].metric_code", "the snapshot does not price it")
        lines = ([] if result.proration == 0 else [base_fee_line(plan, result.proration)]) + usage_lines(result)
        subtotal = sum((line.amount for line in lines), Money.zero(plan.currency_code))
        return E.BuildChargesFromRatingResponse(
            line_items=[ew.line_out(line) for line in lines], subtotal=wire.money(subtotal)
        )

    def RunProration(self, request: E.RunProrationRequest, context: Any) -> E.RunProrationResponse:
        """The base fee for the share of ``[period_start, period_end)`` before ``cut_at``."""
        sub = self._subscription(context, request)
        with wire.errors_as_status(context):
            instants = {}
            for name in ("period_start", "period_end", "cut_at"):
                if not request.HasField(name):
                    raise InvalidValue(name, "is required")
                instants[name] = wire.instant(getattr(request, name), name)
                if instants[name].microsecond:
                    raise InvalidValue(name, "must be a whole second (the answer counts whole seconds)")
            start, end, cut = instants["period_start"], instants["period_end"], instants["cut_at"]
            if end <= start:
                raise InvalidValue("period_end", "must be after period_start")
            if not start <= cut <= end:
                raise InvalidValue("cut_at", "must be within [period_start, period_end]")
            if not request.HasField("plan_snapshot"):
                raise InvalidValue("plan_snapshot", "is required")
            plan = ew.plan_in(request.plan_snapshot, sub.terms.metrics)
        used, full = Period(start, cut), Period(start, end)
        share = proration(used, full)
        included = {m.metric_code: Fraction(m.included_units) * share for m in plan.meters if m.is_metered}
        return E.RunProrationResponse(
            used_seconds=int(used.seconds),
            period_seconds=int(full.seconds),
            line_items=[ew.line_out(base_fee_line(plan, share))],
            prorated_included_units={code: format_decimal(units) for code, units in included.items()},
        )

    def ApplyDiscount(self, request: E.ApplyDiscountRequest, context: Any) -> E.ApplyDiscountResponse:
        """The coupon's DISCOUNT line on the subtotal (capped at it), as the invoice would get it."""
        sub = self._subscription(context, request)
        with wire.errors_as_status(context):
            subtotal = self._subtotal(request, sub.currency)
            if not request.coupon_code:
                raise InvalidValue("coupon_code", "is required")
        coupon = (sub.terms.coupons or {}).get(request.coupon_code)
        if coupon is None:
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"coupon_code: no coupon {request.coupon_code!r}")
        line = discount_line(coupon, subtotal)
        total = Money.zero(sub.currency) if line is None else -line.amount
        lines = [] if line is None else [ew.line_out(line)]
        return E.ApplyDiscountResponse(result=E.DiscountResult(discount_lines=lines, discount_total=wire.money(total)))

    def ApplyTax(self, request: E.ApplyTaxRequest, context: Any) -> E.ApplyTaxResponse:
        """One TAX line per rule of the region (else the default rules) on subtotal − discount."""
        sub = self._subscription(context, request)
        with wire.errors_as_status(context):
            subtotal = self._subtotal(request, sub.currency)
            discount = Money.zero(sub.currency)
            if request.HasField("discount_total"):
                discount = _not_negative(
                    ew.money_in(request.discount_total, "discount_total", sub.currency), "discount_total"
                )
            if discount.amount > subtotal.amount:
                raise InvalidValue("discount_total", "must not be more than the subtotal")
        base = subtotal - discount
        rules = rules_for(request.region_code or None, sub.terms.tax_rules)
        lines = tax_lines(base, rules, request.tax_inclusive) if base.amount > 0 else []
        taxes = [
            invoice_pb2.TaxBreakdown(
                name=rule.name,
                rate_percent=format_decimal(rule.rate_percent),
                amount=wire.money(line.amount),
                region_code=rule.region_code,
                inclusive=request.tax_inclusive,
            )
            for rule, line in zip(rules, lines, strict=False)
        ]
        total = sum((line.amount for line in lines), Money.zero(sub.currency))
        result = E.TaxResult(
            tax_lines=[ew.line_out(line) for line in lines],
            taxes=taxes,
            tax_total=wire.money(total),
            inclusive=request.tax_inclusive,
        )
        return E.ApplyTaxResponse(result=result)

    def ApplyCredit(self, request: E.ApplyCreditRequest, context: Any) -> E.ApplyCreditResponse:
        """The subscription's BALANCE credit against ``total − amount_paid``; nothing is used up."""
        sub = self._subscription(context, request)
        with wire.errors_as_status(context):
            total = _not_negative(ew.required_money(request, "total", sub.currency), "total")
            paid = Money.zero(sub.currency)
            if request.HasField("amount_paid"):
                paid = _not_negative(ew.money_in(request.amount_paid, "amount_paid", sub.currency), "amount_paid")
        with self.ledger.session() as session:
            balance = session.credit_balance(sub.subscription_id, sub.currency)
        applied, remaining = apply_credit(balance, total - paid)
        due = Money(max(0, (total - applied - paid).amount), sub.currency)
        result = E.CreditResult(
            credits_applied=wire.money(applied), amount_due=wire.money(due), remaining_balance=wire.money(remaining)
        )
        return E.ApplyCreditResponse(result=result)

    def _subtotal(self, request: Any, currency: str) -> Money:
        """The request's subtotal; with ``line_items``, they must be charges that add up to it."""
        subtotal = _not_negative(ew.required_money(request, "subtotal", currency), "subtotal")
        if request.line_items:
            lines = ew.lines_in(request.line_items, "line_items", currency)
            for index, line in enumerate(lines):
                if line.type not in SUBTOTAL_TYPES:
                    raise InvalidValue(f"line_items[{index}].type", f"{line.type} is not a charge")
            added = sum((line.amount for line in lines), Money.zero(currency))
            if added != subtotal:
                raise InvalidValue("subtotal", f"the line items add up to {added.amount}, not {subtotal.amount}")
        return subtotal
