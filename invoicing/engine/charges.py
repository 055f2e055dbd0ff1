"""Charges: the RECURRING line and one USAGE line per metered meter, from a RatingResult; and
whether another rating of an invoiced period rates it as its invoice billed it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from invoicing.engine.model import Invoice, InvoiceLineItem, LineType
from invoicing.engine.proration import prorated_base
from invoicing.engine.render import rfc3339
from invoicing.engine.subscriptions import ClosedPeriod
from rating.catalog import Plan
from rating.numbers import format_decimal
from rating.periods import Period
from rating.rate import RatingResult, rate_period


def recurring_line(plan: Plan, result: RatingResult) -> InvoiceLineItem:
    """The plan's base price for the period, prorated when the period was cut short."""
    return base_fee_line(plan, result.proration)


def base_fee_line(plan: Plan, share: Fraction) -> InvoiceLineItem:
    """The RECURRING line for ``share`` of a period (1: the whole), rounded once."""
    amount = prorated_base(plan.base_price, plan.currency_code, share)
    metadata = {"plan_code": plan.code, "plan_version": str(plan.version)}
    description = f"{plan.name or plan.code} base fee"
    if share != 1:
        metadata["proration"] = f"{share.numerator}/{share.denominator}"
        description += f" (prorated {format_decimal(share)})"
    return InvoiceLineItem(LineType.RECURRING, description, amount, Decimal(1), plan.base_price, None, metadata)


def usage_lines(result: RatingResult) -> list[InvoiceLineItem]:
    """One USAGE line per rated meter, with the exact breakdown in its metadata."""
    return [
        InvoiceLineItem(
            LineType.USAGE,
            f"Usage: {item.metric_code}",
            item.amount,
            item.quantity,
            item.unit_price,
            item.metric_code,
            item.metadata(),
        )
        for item in result.items
    ]


def period_charges(closed: ClosedPeriod, result: RatingResult) -> list[InvoiceLineItem]:
    """The lines a closed period's rating puts on its invoice: the base fee (none on a trial), then
    one USAGE line per metered meter; none on a standalone adjustment invoice (ADJUSTMENT lines only)."""
    if closed.is_adjustment:
        return []
    return ([] if closed.is_trial else [recurring_line(closed.plan, result)]) + usage_lines(result)


def rating_differences(invoice: Invoice, closed: ClosedPeriod, result: RatingResult) -> list[tuple[str, str]]:
    """Where ``result``, a final rating of ``closed``, rates the period otherwise than ``invoice``
    billed it, as (field, what differs): the period, the plan, the base fee, each meter's line
    (quantity, amount, unit price and breakdown, compared by value). Empty when it rates it the
    same. The instant it was rated at is no difference; discount, tax, credits and late usage lines
    depend on more than this rating and are not compared."""
    differences = []
    if invoice.period != closed.period:
        differences.append(("period", f"{_span(closed.period)}, invoiced {_span(invoice.period)}"))
    plan = closed.plan
    if (invoice.plan_code, invoice.currency_code) != (plan.code, plan.currency_code):
        differences.append(
            (
                "plan_code",
                f"{plan.code} in {plan.currency_code}, invoiced {invoice.plan_code} in {invoice.currency_code}",
            )
        )
    rated = period_charges(closed, result)
    fee = [line for line in rated if line.type == LineType.RECURRING]
    billed_fee = [line for line in invoice.line_items if line.type == LineType.RECURRING]
    if len(fee) != len(billed_fee) or not all(map(_same, fee, billed_fee)):
        differences.append(("base_fee", f"{_fees(fee)}, invoiced {_fees(billed_fee)}"))
    billed = {line.metric_code: line for line in invoice.line_items if line.type == LineType.USAGE}
    for n, line in enumerate(line for line in rated if line.type == LineType.USAGE):
        before = billed.pop(line.metric_code, None)
        if before is None or not _same(line, before):
            differences.append((f"items[{n}]", f"{_usage(line)}, invoiced {_usage(before)}"))
    for before in billed.values():
        differences.append(("items", f"no {_code(before.metric_code)}, invoiced {_usage(before)}"))
    return differences


def _same(a: InvoiceLineItem, b: InvoiceLineItem) -> bool:
    return a == b and dict(a.metadata) == dict(b.metadata)  # a line's equality leaves metadata out


def _span(period: Period) -> str:
    return f"[{rfc3339(period.start)}, {rfc3339(period.end)})"


def _code(code: str | None) -> str:
    if code is None:
        return "no metric"
    return code if len(code) <= 80 else f"{code[:80]}…"


def _fees(lines: list[InvoiceLineItem]) -> str:
    if not lines:
        return "no base fee"
    return "; ".join(f"{line.description} {line.amount} {dict(line.metadata)}" for line in lines)


def _usage(line: InvoiceLineItem | None) -> str:
    if line is None:
        return "nothing"
    quantity = "none" if line.quantity is None else format_decimal(line.quantity)
    price = "" if line.unit_price is None else f" at {format_decimal(line.unit_price)}"
    return f"{_code(line.metric_code)} {quantity}{price}: {line.amount} {dict(line.metadata)}"


def rate_closed(closed: ClosedPeriod, usage: Mapping[str, Decimal], rated_at: datetime) -> RatingResult:
    """``closed``'s usage (quantity per metric; absent metrics count as 0) priced by its plan
    snapshot, with its share and its subscription's overage rule: a final rating."""
    return rate_period(
        closed.subscription.id,
        closed.plan,
        closed.period,
        usage,
        rated_at=rated_at,
        proration=closed.share,
        allow_overage=closed.subscription.allow_overage_billing,
    )
