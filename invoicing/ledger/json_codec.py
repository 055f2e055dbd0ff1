"""The ledger's values as JSON: plan snapshots, tenant terms and the catalog's records (what the
topics of invoicing/ledger/catalog.py carry); decimals as strings so they stay exact, enums by
value, instants RFC 3339 UTC. The snapshot stored with a plan version is what prices every invoice
of that version; the terms (metrics, tax rules, coupons) travel the same way on ``catalog.terms``
and inside every ``rating.results`` message."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.render import rfc3339_exact
from invoicing.engine.subscriptions import Lifecycle, Subscription, SubscriptionStatus
from invoicing.engine.tax import TaxRule
from invoicing.engine.terms import BillingTerms
from invoicing.ports import SubscriptionRecord, TermsRecord
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier, TierMode
from rating.errors import BillingError, InvalidValue
from rating.numbers import parse_decimal
from rating.periods import BillingInterval


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _number(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "code": plan.code,
        "currency_code": plan.currency_code,
        "base_price": str(plan.base_price),
        "billing_interval": str(plan.billing_interval.value),
        "tax_inclusive": plan.tax_inclusive,
        "name": plan.name,
        "version": plan.version,
        "metadata": dict(plan.metadata),
        "meters": [
            {
                "metric_code": m.metric_code,
                "pricing_model": str(m.pricing_model.value),
                "unit_price": str(m.unit_price),
                "included_units": str(m.included_units),
                "overage_unit_price": _text(m.overage_unit_price),
                "package_size": _text(m.package_size),
                "tier_mode": str(m.tier_mode.value),
                "tiers": [
                    {"up_to": _text(t.up_to), "unit_price": str(t.unit_price), "flat_fee": str(t.flat_fee)}
                    for t in m.tiers
                ],
            }
            for m in plan.meters
        ],
    }


def plan_from_json(raw: dict[str, Any]) -> Plan:
    meters = tuple(
        PlanMeter(
            m["metric_code"],
            PricingModel(m["pricing_model"]),
            Decimal(m["unit_price"]),
            Decimal(m["included_units"]),
            _number(m["overage_unit_price"]),
            _number(m["package_size"]),
            TierMode(m["tier_mode"]),
            tuple(Tier(_number(t["up_to"]), Decimal(t["unit_price"]), Decimal(t["flat_fee"])) for t in m["tiers"]),
        )
        for m in raw["meters"]
    )
    return Plan(
        raw["code"],
        raw["currency_code"],
        Decimal(raw["base_price"]),
        BillingInterval(raw["billing_interval"]),
        raw["tax_inclusive"],
        meters,
        raw["name"],
        raw["version"],
        dict(raw["metadata"]),
    )


def terms_to_json(terms: BillingTerms) -> dict[str, Any]:
    """A tenant's terms: every metric, tax rule and coupon, in a stable order."""
    return {
        "tenant_id": terms.tenant_id,
        "metrics": [
            {"code": m.code, "type": str(m.type), "aggregation": str(m.aggregation), "unit": m.unit, "field": m.field}
            for m in terms.metrics.values()
        ],
        "tax_rules": [
            {
                "region_code": r.region_code,
                "name": r.name,
                "rate_percent": str(r.rate_percent),
                "is_default": r.is_default,
                "is_active": r.is_active,
            }
            for r in terms.tax_rules
        ],
        "coupons": [
            {
                "code": c.code,
                "percent_off": _text(c.percent_off),
                "amount_off": _text(c.amount_off),
                "duration": str(c.duration),
                "duration_in_periods": c.duration_in_periods,
            }
            for c in (terms.coupons or {}).values()
        ],
        # only when not the defaults, so terms stored before payments read and compare the same
        **(
            {}
            if terms.payment_terms == PaymentTerms()
            else {"payment_terms": payment_terms_to_json(terms.payment_terms)}
        ),
    }


def payment_terms_to_json(terms: PaymentTerms) -> dict[str, Any]:
    return {
        "net_days": terms.net_days,
        "retry_days": list(terms.retry_days),
        "cancel_after_days": terms.cancel_after_days,
    }


def payment_terms_from_json(raw: dict[str, Any], at: str) -> PaymentTerms:
    """Payment terms, checked; a missing key takes its default."""
    default = PaymentTerms()
    try:
        net = raw.get("net_days", default.net_days)
        retry = raw.get("retry_days", list(default.retry_days))
        cancel = raw.get("cancel_after_days", default.cancel_after_days)
        if not isinstance(net, int) or isinstance(net, bool):
            raise InvalidValue("net_days", f"must be a whole number of days, got {net!r}")
        if not isinstance(retry, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in retry):
            raise InvalidValue("retry_days", f"must be a list of whole days, got {retry!r}")
        if cancel is not None and (not isinstance(cancel, int) or isinstance(cancel, bool)):
            raise InvalidValue("cancel_after_days", f"must be a whole number of days or null, got {cancel!r}")
        unknown = set(raw) - {"net_days", "retry_days", "cancel_after_days"}
        if unknown:
            raise InvalidValue(sorted(unknown)[0], "is not a payment term")
        return PaymentTerms(net, tuple(retry), cancel)
    except BillingError as error:
        raise error.at(at) from None


def bounded_decimal(text: str, name: str) -> Decimal:
    """Exact, finite, below 1e26 and at most 12 fractional digits, like every quantity and price:
    an exponent like 1e999999999 from a message would otherwise stall whoever rates with it."""
    try:
        return parse_decimal(text, name, allow_negative=True)
    except ArithmeticError:  # abs() of an exponent beyond the context's range overflows
        raise InvalidValue(name, f"magnitude must be below 1e26, got {text[:40]!r}") from None


def _optional_bounded(text: str | None, name: str) -> Decimal | None:
    return None if text is None else bounded_decimal(text, name)


def terms_from_json(raw: dict[str, Any], at: str = "terms") -> BillingTerms:
    """The terms of :func:`terms_to_json`, checked: a bad value is an error naming its field under ``at``."""
    metrics: dict[str, Metric] = {}
    for n, m in enumerate(raw["metrics"]):
        try:
            metric = Metric(m["code"], MetricType(m["type"]), Aggregation(m["aggregation"]), m["unit"], m["field"])
        except BillingError as error:
            raise error.at(f"{at}.metrics[{n}]") from None
        except ValueError as error:
            raise InvalidValue(f"{at}.metrics[{n}]", str(error)) from None
        if metric.code in metrics:
            raise InvalidValue(f"{at}.metrics[{n}].code", f"{metric.code!r} is defined twice")
        metrics[metric.code] = metric
    rules = []
    for n, r in enumerate(raw["tax_rules"]):
        try:
            rate = bounded_decimal(r["rate_percent"], "rate_percent")
            rules.append(TaxRule(r["region_code"], r["name"], rate, r["is_default"], r["is_active"]))
        except BillingError as error:
            raise error.at(f"{at}.tax_rules[{n}]") from None
    coupons: dict[str, Coupon] = {}
    for n, c in enumerate(raw["coupons"]):
        name = f"{at}.coupons[{n}]"
        try:
            coupon = Coupon(
                c["code"],
                _optional_bounded(c["percent_off"], "percent_off"),
                _optional_bounded(c["amount_off"], "amount_off"),
                CouponDuration(c["duration"]),
                c["duration_in_periods"],
            )
        except BillingError as error:
            raise error.at(name) from None
        except ValueError as error:
            raise InvalidValue(name, str(error)) from None
        coupons[coupon.code] = coupon
    payment_terms = PaymentTerms()
    if raw.get("payment_terms") is not None:
        if not isinstance(raw["payment_terms"], dict):
            raise InvalidValue(f"{at}.payment_terms", "must be a mapping")
        payment_terms = payment_terms_from_json(raw["payment_terms"], f"{at}.payment_terms")
    return BillingTerms(raw["tenant_id"], metrics, tuple(rules), coupons, payment_terms)


def subscription_to_json(record: SubscriptionRecord) -> dict[str, Any]:
    """The ``catalog.subscriptions`` value: plain JSON, decimals as strings, instants RFC 3339 UTC."""
    sub = record.subscription
    return {
        "id": sub.id,
        "tenant_id": sub.tenant_id,
        "plan_code": sub.plan_code,
        "plan_version": record.plan_version,
        "billing_interval": str(record.billing_interval.value),
        "start_at": rfc3339_exact(sub.start_at),
        "timezone": sub.timezone,
        "region_code": sub.region_code,
        "allow_overage_billing": sub.allow_overage_billing,
        "trial_days": sub.trial_days,
        "trial_balance": None if sub.trial_balance is None else str(sub.trial_balance),
        "has_payment_method": sub.has_payment_method,
        "coupon_code": sub.coupon_code,
        "status": str(record.status.value),
        "revision": record.revision,
        "lifecycle": lifecycle_to_json(record.lifecycle),
    }


def _instant_json(value: datetime | None) -> str | None:
    return None if value is None else rfc3339_exact(value)


def _instant_from(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def lifecycle_to_json(life: Lifecycle) -> dict[str, Any]:
    """The ``lifecycle`` of a ``catalog.subscriptions`` value: instants RFC 3339 UTC or null."""
    return {
        "effective_at": _instant_json(life.effective_at),
        "previous_plan_code": life.previous_plan_code,
        "previous_plan_version": life.previous_plan_version,
        "plan_changed_at": _instant_json(life.plan_changed_at),
        "trial_end_at": _instant_json(life.trial_end_at),
        "trial_cut": life.trial_cut,
        "cancel_at": _instant_json(life.cancel_at),
        "canceled_at": _instant_json(life.canceled_at),
        "cancel_at_period_end": life.cancel_at_period_end,
        "cancel_reason": life.cancel_reason,
    }


def lifecycle_from_json(raw: dict[str, Any] | None) -> Lifecycle:
    """A value written before lifecycles were kept has none: the revision took effect when read."""
    if raw is None:
        return Lifecycle()
    return Lifecycle(
        effective_at=_instant_from(raw["effective_at"]),
        previous_plan_code=raw["previous_plan_code"],
        previous_plan_version=raw["previous_plan_version"],
        plan_changed_at=_instant_from(raw["plan_changed_at"]),
        trial_end_at=_instant_from(raw["trial_end_at"]),
        trial_cut=raw["trial_cut"],
        cancel_at=_instant_from(raw["cancel_at"]),
        canceled_at=_instant_from(raw["canceled_at"]),
        cancel_at_period_end=raw["cancel_at_period_end"],
        cancel_reason=raw["cancel_reason"],
    )


def subscription_from_json(raw: dict[str, Any]) -> SubscriptionRecord:
    """The record of a ``catalog.subscriptions`` value (what a worker's table holds)."""
    balance = raw["trial_balance"]
    subscription = Subscription(
        id=raw["id"],
        tenant_id=raw["tenant_id"],
        plan_code=raw["plan_code"],
        start_at=datetime.fromisoformat(raw["start_at"]),
        timezone=raw["timezone"],
        region_code=raw["region_code"],
        allow_overage_billing=raw["allow_overage_billing"],
        trial_days=raw["trial_days"],
        trial_balance=None if balance is None else Decimal(balance),
        has_payment_method=raw["has_payment_method"],
        coupon_code=raw["coupon_code"],
    )
    return SubscriptionRecord(
        subscription,
        raw["plan_version"],
        BillingInterval(raw["billing_interval"]),
        SubscriptionStatus(raw["status"]),
        raw["revision"],
        lifecycle_from_json(raw.get("lifecycle")),
    )


def terms_record_to_json(record: TermsRecord) -> dict[str, Any]:
    """The ``catalog.terms`` value: ``{**terms_to_json(terms), "revision": n}``."""
    return {**terms_to_json(record.terms), "revision": record.revision}


def terms_record_from_json(raw: dict[str, Any], at: str = "terms") -> TermsRecord:
    """The record of a ``catalog.terms`` value, checked: a bad value is an error naming its field."""
    revision = raw.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise InvalidValue(f"{at}.revision", f"expected a whole number from 1, got {revision!r}")
    return TermsRecord(terms_from_json(raw, at), revision)
