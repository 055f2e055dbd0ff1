"""Scenario files (design section 5): YAML or JSON parsed into frozen domain values at the edge.

Every error names the field it found wrong, as a path: ``plans[0].meters[1].unit_price``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from billing.simulate.documents import parse_json, parse_yaml, read_text
from billing.simulate.fields import (
    Fields,
    choice,
    decimal,
    duration,
    event_metadata,
    event_value,
    flag,
    instant,
    key_text,
    long_text,
    metadata_key,
    price,
    text,
    unique,
    whole,
    within,
)
from billing.simulate.scenario import ACTIONS, Action, Scenario, ScenarioEvent
from invoicing.engine.credit import CreditType
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.subscriptions import Subscription
from invoicing.engine.tax import TaxRule
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier, TierMode
from rating.errors import InvalidValue, UnknownReference
from rating.periods import BillingInterval, zone


def _metric(raw: object, path: str) -> Metric:
    f = Fields(raw, path)
    return f.checked(
        within(
            path,
            lambda: Metric(
                code=f.get("code", text, required=True),
                type=f.get("type", choice(MetricType), MetricType.COUNTER),
                aggregation=f.get("aggregation", choice(Aggregation), Aggregation.SUM),
                unit=f.get("unit", long_text, ""),
                field=f.get("field", metadata_key),
            ),
        )
    )


def _tier(raw: object, path: str) -> Tier:
    f = Fields(raw, path)
    return f.checked(
        Tier(
            up_to=f.get("up_to", decimal),
            unit_price=f.get("unit_price", price, Decimal(0)),
            flat_fee=f.get("flat_fee", price, Decimal(0)),
        )
    )


def _meter(raw: object, path: str) -> PlanMeter:
    f = Fields(raw, path)
    tiers = tuple(_tier(item, p) for item, p in f.items("tiers"))
    return f.checked(
        within(
            path,
            lambda: PlanMeter(
                metric_code=f.get("metric_code", text, required=True),
                pricing_model=f.get("pricing_model", choice(PricingModel, {"METERED": "PER_UNIT"}), required=True),
                unit_price=f.get("unit_price", price, Decimal(0)),
                included_units=f.get("included_units", decimal, Decimal(0)),
                overage_unit_price=f.get("overage_unit_price", price),
                package_size=f.get("package_size", decimal),
                tier_mode=f.get("tier_mode", choice(TierMode), TierMode.GRADUATED),
                tiers=tiers,
            ),
        )
    )


def parse_plan(raw: object, path: str, metrics: Mapping[str, Metric]) -> Plan:
    """A plan from its mapping: the one definition of a valid plan (files and ``CreatePlan``)."""
    f = Fields(raw, path)
    meters = tuple(_meter(item, p) for item, p in f.items("meters"))
    for index, meter in enumerate(meters):
        if meter.metric_code not in metrics:
            raise UnknownReference(f"{path}.meters[{index}].metric_code", f"no metric {meter.metric_code!r}")
    return f.checked(
        within(
            path,
            lambda: Plan(
                code=f.get("code", text, required=True),
                currency_code=f.get("currency_code", text, required=True).upper(),
                base_price=f.get("base_price", price, Decimal(0)),
                billing_interval=f.get("billing_interval", choice(BillingInterval), BillingInterval.MONTH),
                tax_inclusive=f.get("tax_inclusive", flag, False),
                meters=meters,
                name=f.get("name", long_text, ""),
            ),
        )
    )


def _tax_rule(raw: object, path: str) -> TaxRule:
    f = Fields(raw, path)
    return f.checked(
        within(
            path,
            lambda: TaxRule(
                region_code=f.get("region_code", text, required=True),
                name=f.get("name", long_text, "Tax"),
                rate_percent=f.get("rate_percent", decimal, required=True),
                is_default=f.get("is_default", flag, False),
                is_active=f.get("is_active", flag, True),
            ),
        )
    )


def _coupon(raw: object, path: str) -> Coupon:
    f = Fields(raw, path)
    return f.checked(
        within(
            path,
            lambda: Coupon(
                code=f.get("code", text, required=True),
                percent_off=f.get("percent_off", decimal),
                amount_off=f.get("amount_off", price),
                duration=f.get("duration", choice(CouponDuration), CouponDuration.ONCE),
                duration_in_periods=f.get("duration_in_periods", whole) or f.get("duration_in_months", whole),
            ),
        )
    )


def parse_subscription(
    raw: object, path: str, tenant_id: str, plans: Mapping[str, Plan], coupons: set[str]
) -> Subscription:
    """A subscription from its mapping, on one of ``plans`` (files and ``CreateSubscription``)."""
    f = Fields(raw, path)
    plan_code = f.get("plan_code", text, required=True)
    if plan_code not in plans:
        raise UnknownReference(f.name("plan_code"), f"no plan {plan_code!r}")
    coupon = f.get("coupon", text)
    if coupon is not None and coupon not in coupons:
        raise UnknownReference(f.name("coupon"), f"no coupon {coupon!r}")
    timezone = f.get("timezone", text, "UTC")
    zone(timezone, f.name("timezone"))
    return f.checked(
        within(
            path,
            lambda: Subscription(
                id=f.get("id", text, required=True),
                tenant_id=f.get("tenant_id", text, tenant_id),
                plan_code=plan_code,
                start_at=f.get("start_at", instant, required=True),
                timezone=timezone,
                region_code=f.get("region_code", text),
                allow_overage_billing=f.get("allow_overage_billing", flag, True),
                trial_days=f.get("trial_days", whole, 0),
                trial_balance=f.get("trial_balance", price),
                has_payment_method=f.get("has_payment_method", flag, True),
                coupon_code=coupon,
            ),
        )
    )


def parse_event(raw: object, path: str, index: int, tenant_id: str) -> ScenarioEvent:
    f = Fields(raw, path)
    recorded_at = f.get("recorded_at", instant, required=True)
    arrives_at = f.get("arrives_at", instant, recorded_at)
    if arrives_at < recorded_at:
        raise InvalidValue(f.name("arrives_at"), "an event cannot arrive before it was recorded")
    return f.checked(
        ScenarioEvent(
            id=f.get("id", key_text, f"evt_{index}"),
            subscription_id=f.get("subscription_id", text, ""),
            metric_code=f.get("metric_code", text, ""),
            value=f.get("value", event_value, required=True),
            recorded_at=recorded_at,
            arrives_at=arrives_at,
            idempotency_key=f.get("idempotency_key", key_text, ""),
            metadata=f.get("metadata", event_metadata, {}),
            tenant_id=f.get("tenant_id", text, tenant_id),
        )
    )


def _action(raw: object, path: str, plans: Mapping[str, Plan], subscriptions: Mapping[str, Subscription]) -> Action:
    f = Fields(raw, path)
    kind = f.get("type", text, required=True)
    if kind not in ACTIONS:
        raise InvalidValue(f.name("type"), f"unknown action {kind!r}; expected one of {', '.join(ACTIONS)}")
    subscription_id = f.get("subscription_id", text, required=True)
    if subscription_id not in subscriptions:
        raise UnknownReference(f.name("subscription_id"), f"no subscription {subscription_id!r}")
    plan_code = f.get("plan_code", text, required=kind == "change_plan")
    if plan_code is not None and plan_code not in plans:
        raise UnknownReference(f.name("plan_code"), f"no plan {plan_code!r}")
    at = f.get("at", instant, required=True)
    start_at = subscriptions[subscription_id].start_at
    if kind != "credit_note" and at < start_at:  # a plan change or cancel needs an open period
        raise InvalidValue(f.name("at"), f"{at.isoformat()} is before subscription {subscription_id!r} starts")
    return f.checked(
        Action(
            at=at,
            type=kind,
            subscription_id=subscription_id,
            plan_code=plan_code,
            amount=f.get("amount", price, required=kind == "credit_note"),
            credit_type=f.get("credit_type", choice(CreditType), CreditType.BALANCE),
            at_period_end=f.get("at_period_end", flag, False),
            reason=f.get("reason", long_text, ""),
            token=f.get("token", text, required=kind == "attach_payment_method"),
        )
    )


def _payment_terms(raw: object, path: str) -> PaymentTerms:
    f = Fields(raw, path)
    default = PaymentTerms()
    retry = [whole(value, item) for value, item in f.items("retry_days")] if f.has("retry_days") else None
    try:
        terms = PaymentTerms(
            net_days=f.get("net_days", whole, default.net_days),
            retry_days=default.retry_days if retry is None else tuple(retry),
            cancel_after_days=f.get("cancel_after_days", whole, None),
        )
    except InvalidValue as error:
        raise error.at(path) from None
    return f.checked(terms)


def parse_scenario(raw: object) -> Scenario:
    """A scenario from parsed YAML/JSON; raises BillingError naming the field at fault."""
    f = Fields(raw, "")
    tenant_id = f.get("tenant_id", text, "default")
    metrics = unique([_metric(i, p) for i, p in f.items("metrics")], lambda m: m.code, "metrics")
    plans = unique([parse_plan(i, p, metrics) for i, p in f.items("plans")], lambda p: p.code, "plans")
    tax_rules = tuple(_tax_rule(i, p) for i, p in f.items("tax_rules"))
    coupons = unique([_coupon(i, p) for i, p in f.items("coupons")], lambda c: c.code, "coupons")
    subscriptions = unique(
        [parse_subscription(i, p, tenant_id, plans, set(coupons)) for i, p in f.items("subscriptions")],
        lambda s: s.id,
        "subscriptions",
    )
    events = tuple(parse_event(i, p, n, tenant_id) for n, (i, p) in enumerate(f.items("events")))
    actions = tuple(_action(i, p, plans, subscriptions) for i, p in f.items("actions"))
    scenario = Scenario(
        tenant_id=tenant_id,
        metrics=tuple(metrics.values()),
        plans=tuple(plans.values()),
        tax_rules=tax_rules,
        coupons=tuple(coupons.values()),
        subscriptions=tuple(subscriptions.values()),
        events=events,
        actions=actions,
        run_until=f.get("run_until", instant, required=True),
        grace_period=f.get("grace_period", duration, timedelta(0)),
        payment_terms=_payment_terms(f.raw["payment_terms"], "payment_terms") if f.has("payment_terms") else None,
    )
    return f.checked(scenario, ignore_prefix="expected")


def load_scenario(path: Path) -> Scenario:
    """Read a YAML or JSON scenario file (JSON is YAML, but its own errors read better)."""
    content = read_text(path, "scenario")
    try:
        raw: Any = parse_json(content) if path.suffix == ".json" else parse_yaml(content)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise InvalidValue("scenario", f"{path} is not valid {kind}: {error}") from None
    return parse_scenario(raw)
