"""``rating.results`` messages: the final RatingResult of a closed period ↔ a ``FinalRating``.

A message carries everything ``InvoiceFinalizer.finalize`` needs besides the ledger, so the
invoice worker needs no catalog and no usage store: the subscription as it stood, the plan
snapshot (the ledger's JSON snapshot format), the period's usage with the amounts the rating agent
priced, the current usage of earlier periods that received late usage, and the tenant's billing
terms (``schemas/avro/rating_result.v1.avsc``). The terms travel inline, trimmed to what this
invoice can use (the metrics of its items and late usage, all tax rules, the subscription's
coupon), so an invoice is computed from the terms of the moment its period closed, as the plan is.

Reading checks that the message agrees with itself (the items are the plan's metered meters and
their amounts are what the plan prices their quantities at); a message that does not raises a
``BillingError`` naming the field, and bytes that are no message raise ``WireFormatError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from invoicing.engine.charges import rate_closed
from invoicing.engine.subscriptions import ClosedPeriod, Subscription
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.json_codec import bounded_decimal, plan_from_json, plan_to_json, terms_from_json, terms_to_json
from rating.catalog import Plan
from rating.errors import BillingError, InvalidValue
from rating.late import LateUsage
from rating.money import Money
from rating.periods import Period
from rating.rate import RatingResult
from schemas import avro_codec

RATING_RESULT = "rating_result.v1"


@dataclass(frozen=True, slots=True)
class FinalRating:
    """A closed period's final RatingResult and everything its invoice needs besides the ledger.

    ``result.rated_at`` is the finalize instant; ``result.period`` and ``result.proration`` are the
    closed period's. Build one with :func:`final_rating`."""

    closed: ClosedPeriod
    result: RatingResult
    terms: BillingTerms
    late_usage: tuple[LateUsage, ...] = field(default=())

    @property
    def finalized_at(self) -> datetime:
        return self.result.rated_at

    @property
    def late_periods(self) -> frozenset[datetime]:
        """The starts of the late periods."""
        return frozenset(u.period.start for u in self.late_usage)

    @property
    def usage(self) -> dict[str, Decimal]:
        """The closed period's quantity per metric."""
        return {item.metric_code: item.quantity for item in self.result.items}


def final_rating(
    closed: ClosedPeriod, terms: BillingTerms, result: RatingResult, late_usage: Iterable[LateUsage] = ()
) -> FinalRating:
    """The message of ``closed`` rated as ``result`` (``InvoiceService.rate`` at the finalize
    instant); ``terms`` are the tenant's whole terms, trimmed here to what the invoice can use."""
    late = tuple(late_usage)
    return FinalRating(closed, result, _trimmed(terms, closed, result, late), late)


def _trimmed(
    terms: BillingTerms, closed: ClosedPeriod, result: RatingResult, late: tuple[LateUsage, ...]
) -> BillingTerms:
    wanted = {i.metric_code for i in result.items} | {u.metric_code for u in late}
    code = closed.subscription.coupon_code
    coupons = terms.coupons or {}
    return BillingTerms(
        terms.tenant_id,
        {c: m for c, m in terms.metrics.items() if c in wanted},
        tuple(terms.tax_rules),
        {code: coupons[code]} if code is not None and code in coupons else {},
    )


# -- writing ---------------------------------------------------------------------------------------


def _wire_instant(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidValue(name, "must carry a timezone")
    if value.microsecond % 1000:
        raise InvalidValue(name, f"{value.isoformat()} is finer than a millisecond; the wire keeps milliseconds")
    return value


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def rating_result_avro(rating: FinalRating) -> dict[str, Any]:
    """The Avro record of ``rating`` (for ``avro_codec.encode``)."""
    closed, result, terms = rating.closed, rating.result, rating.terms
    sub = closed.subscription
    if result.period != closed.period or result.proration != closed.share or result.subscription_id != sub.id:
        raise InvalidValue("result", "the RatingResult is not the closed period's (period, proration or subscription)")
    return {
        "subscription_id": sub.id,
        "plan_code": result.plan_code,
        "plan_version": result.plan_version,
        "period_start": _wire_instant(closed.period.start, "period_start"),
        "period_end": _wire_instant(closed.period.end, "period_end"),
        "proration_numerator": closed.share.numerator,
        "proration_denominator": closed.share.denominator,
        "rated_at": _wire_instant(result.rated_at, "rated_at"),
        "items": [
            {
                "metric_code": item.metric_code,
                "quantity": str(item.quantity),
                "amount": {"amount_minor": item.amount.amount, "currency_code": item.amount.currency},
            }
            for item in result.items
        ],
        "is_trial": closed.is_trial,
        "reason": closed.reason,
        "subscription": {
            "id": sub.id,
            "tenant_id": sub.tenant_id,
            "plan_code": sub.plan_code,
            "start_at": _wire_instant(sub.start_at, "subscription.start_at"),
            "timezone": sub.timezone,
            "region_code": sub.region_code,
            "allow_overage_billing": sub.allow_overage_billing,
            "trial_days": sub.trial_days,
            "trial_balance": _text(sub.trial_balance),
            "has_payment_method": sub.has_payment_method,
            "coupon_code": sub.coupon_code,
        },
        "plan_snapshot": json.dumps(plan_to_json(closed.plan), separators=(",", ":")),
        "terms": terms_to_json(terms),
        "late_usage": [
            {
                "period_start": _wire_instant(u.period.start, f"late_usage[{n}].period_start"),
                "period_end": _wire_instant(u.period.end, f"late_usage[{n}].period_end"),
                "metric_code": u.metric_code,
                "quantity": str(u.quantity),
            }
            for n, u in enumerate(rating.late_usage)
        ],
    }


def write_rating_result(rating: FinalRating) -> bytes:
    """The ``rating.results`` message value of ``rating`` (key it by ``subscription_id``)."""
    return avro_codec.encode(RATING_RESULT, rating_result_avro(rating))


# -- reading ---------------------------------------------------------------------------------------


def _optional_decimal(text: str | None, name: str) -> Decimal | None:
    return None if text is None else bounded_decimal(text, name)


def _bounded_plan(plan: Plan) -> Plan:
    bounded_decimal(str(plan.base_price), "base_price")
    for n, m in enumerate(plan.meters):
        numbers: dict[str, Decimal | None] = {"unit_price": m.unit_price, "included_units": m.included_units}
        numbers |= {"overage_unit_price": m.overage_unit_price, "package_size": m.package_size}
        for t, tier in enumerate(m.tiers):
            numbers |= {f"tiers[{t}].up_to": tier.up_to, f"tiers[{t}].unit_price": tier.unit_price}
            numbers[f"tiers[{t}].flat_fee"] = tier.flat_fee
        for name, number in numbers.items():
            if number is not None:
                bounded_decimal(str(number), f"meters[{n}].{name}")
    return plan


def _plan(text: str) -> Plan:
    try:
        return _bounded_plan(plan_from_json(json.loads(text)))
    except BillingError as error:
        raise error.at("plan_snapshot") from None
    except (ValueError, KeyError, TypeError, ArithmeticError) as error:
        raise InvalidValue("plan_snapshot", f"not a plan snapshot: {type(error).__name__}: {error}") from None


def _subscription(raw: dict[str, Any]) -> Subscription:
    try:
        return Subscription(
            raw["id"],
            raw["tenant_id"],
            raw["plan_code"],
            raw["start_at"],
            raw["timezone"],
            raw["region_code"],
            raw["allow_overage_billing"],
            raw["trial_days"],
            _optional_decimal(raw["trial_balance"], "trial_balance"),
            raw["has_payment_method"],
            raw["coupon_code"],
        )
    except BillingError as error:
        raise error.at("subscription") from None


def _period(start: datetime, end: datetime, name: str) -> Period:
    try:
        return Period(start, end)
    except BillingError as error:
        raise InvalidValue(name, error.message) from None


def _check_items(raw_items: list[dict[str, Any]], result: RatingResult) -> None:
    """The message's items must be the plan's metered meters, priced as the plan prices them."""
    sent = [item["metric_code"] for item in raw_items]
    rated = [item.metric_code for item in result.items]
    if sent != rated:
        raise InvalidValue("items", f"metrics {sent} are not the plan's metered meters {rated}")
    for n, (raw, item) in enumerate(zip(raw_items, result.items, strict=True)):
        amount = Money(raw["amount"]["amount_minor"], raw["amount"]["currency_code"])
        if amount != item.amount:
            raise InvalidValue(
                f"items[{n}].amount",
                f"{item.metric_code}: the message says {amount}, the plan prices {item.quantity} at {item.amount}",
            )


def _final_rating(raw: dict[str, Any]) -> FinalRating:
    subscription = _subscription(raw["subscription"])
    if subscription.id != raw["subscription_id"]:
        raise InvalidValue("subscription.id", f"{subscription.id!r} is not the result's {raw['subscription_id']!r}")
    plan = _plan(raw["plan_snapshot"])
    if (plan.code, plan.version) != (raw["plan_code"], raw["plan_version"]):
        raise InvalidValue(
            "plan_snapshot",
            f"is {plan.code} v{plan.version}, the result's is {raw['plan_code']} v{raw['plan_version']}",
        )
    terms = terms_from_json(raw["terms"])
    if terms.tenant_id != subscription.tenant_id:
        raise InvalidValue(
            "terms.tenant_id", f"{terms.tenant_id!r} is not the subscription's {subscription.tenant_id!r}"
        )
    period = _period(raw["period_start"], raw["period_end"], "period")
    try:
        share = Fraction(raw["proration_numerator"], raw["proration_denominator"])
    except ZeroDivisionError:
        raise InvalidValue("proration_denominator", "must not be 0") from None
    if not 0 <= share <= 1:
        raise InvalidValue("proration_numerator", f"share {share} is not between 0 and 1")
    usage: dict[str, Decimal] = {}
    for n, item in enumerate(raw["items"]):
        usage[item["metric_code"]] = bounded_decimal(item["quantity"], f"items[{n}].quantity")
    closed = ClosedPeriod(subscription, plan, period, share, raw["is_trial"], raw["reason"])
    result = rate_closed(closed, usage, raw["rated_at"])
    _check_items(raw["items"], result)
    late = []
    seen: set[tuple[datetime, datetime, str]] = set()
    for n, u in enumerate(raw["late_usage"]):
        name = f"late_usage[{n}]"
        late_period = _period(u["period_start"], u["period_end"], name)
        key = (late_period.start, late_period.end, u["metric_code"])
        if key in seen:
            raise InvalidValue(name, f"{u['metric_code']} of {late_period.start}–{late_period.end} is given twice")
        if late_period.start == period.start:
            raise InvalidValue(name, "a late period is an earlier, finalized one, not the closing period")
        seen.add(key)
        late.append(LateUsage(late_period, u["metric_code"], bounded_decimal(u["quantity"], f"{name}.quantity")))
    return FinalRating(closed, result, terms, tuple(late))


def read_rating_result(value: bytes) -> FinalRating:
    """The FinalRating of a ``rating.results`` message value. Raises ``WireFormatError`` for bytes
    that are no RatingResult and a ``BillingError`` (with the field) for one that is not valid."""
    writer = avro_codec.writer_schema_of(value)
    if not writer.startswith("rating_result."):
        raise avro_codec.WireFormatError(f"a {writer} message is not a RatingResult")
    return _final_rating(avro_codec.decode(RATING_RESULT, value))
