"""Plan snapshots as JSON: decimals as strings so they stay exact, enums by value. The snapshot
stored with a plan version is what prices every invoice of that version."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rating.catalog import Plan, PlanMeter, PricingModel, Tier, TierMode
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
