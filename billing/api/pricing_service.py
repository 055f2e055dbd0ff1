"""``smallbiznis.pricing.v1.PricingService`` on the ledger's catalog.

A plan on the wire is a plan version; its ``id`` is ``<code>@<version>``. ``CreatePlan`` validates
through the same reader as scenario files (``parse_plan``: one definition of a valid plan, errors
naming the field under ``plan.``), against the metrics of the tenant's terms (``billing catalog
apply``); creating a code again makes a new version only when the prices differ, so a retried
create answers the version it made. ``active`` means the newest version of its code: older
versions are kept (invoices stay priced with them) but new subscriptions take the newest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc

from billing.api import wire
from billing.api.paging import decode_token, encode_token, page_size
from billing.simulate.scenario_file import parse_plan
from invoicing.ports import ApiLedger, Ledger, StoredPlan
from rating.catalog import Plan, PlanMeter
from rating.errors import InvalidValue
from rating.limits import bounded_metadata
from rating.numbers import format_decimal
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2, pricing_pb2_grpc


def plan_id(code: str, version: int) -> str:
    return f"{code}@{version}"


def parse_plan_id(value: str) -> tuple[str, int] | None:
    """The (code, version) an id names; None for text no plan id looks like."""
    code, _, version = value.rpartition("@")
    if not code or not version.isdigit() or len(version) > 9:
        return None
    return code, int(version)


def _text(message: Any, name: str) -> str | None:
    """A string field as the scenario reader takes it: None when empty or unset."""
    if message.DESCRIPTOR.fields_by_name[name].has_presence and not message.HasField(name):
        return None
    return getattr(message, name) or None


def _enum(message: Any, name: str, prefix: str) -> str | None:
    value = getattr(message, name)
    return (
        None
        if value == 0
        else message.DESCRIPTOR.fields_by_name[name].enum_type.values_by_number[value].name.removeprefix(prefix)
    )


def plan_mapping(plan: pricing_pb2.Plan) -> dict[str, Any]:
    """The request's plan as a scenario file's plan mapping (unset fields left out)."""
    meters = []
    for index, meter in enumerate(plan.meters):
        if meter.metadata:
            raise InvalidValue(f"plan.meters[{index}].metadata", "meter metadata is not stored; use the plan's")
        tiers = [{k: _text(tier, k) for k in ("up_to", "unit_price", "flat_fee")} for tier in meter.tiers]
        meters.append(
            {
                **{k: _text(meter, k) for k in ("metric_code", "unit_price", "included_units")},
                **{k: _text(meter, k) for k in ("overage_unit_price", "package_size")},
                "pricing_model": _enum(meter, "pricing_model", "PRICING_MODEL_"),
                "tier_mode": _enum(meter, "tier_mode", "TIER_MODE_"),
                "tiers": tiers or None,
            }
        )
    interval = _enum(plan, "billing_interval", "BILLING_INTERVAL_")
    return {
        **{k: _text(plan, k) for k in ("code", "currency_code", "base_price", "name")},
        "billing_interval": None if interval is None else interval.lower(),
        "tax_inclusive": plan.tax_inclusive,
        "meters": meters,
    }


def _meter_message(meter: PlanMeter) -> pricing_pb2.PlanMeter:
    message = pricing_pb2.PlanMeter(
        metric_code=meter.metric_code,
        pricing_model=f"PRICING_MODEL_{meter.pricing_model.value}",
        tier_mode=f"TIER_MODE_{meter.tier_mode.value}",
        unit_price=format_decimal(meter.unit_price),
        included_units=format_decimal(meter.included_units),
    )
    if meter.overage_unit_price is not None:
        message.overage_unit_price = format_decimal(meter.overage_unit_price)
    if meter.package_size is not None:
        message.package_size = format_decimal(meter.package_size)
    for tier in meter.tiers:
        wire_tier = message.tiers.add(
            unit_price=format_decimal(tier.unit_price), flat_fee=format_decimal(tier.flat_fee)
        )
        if tier.up_to is not None:
            wire_tier.up_to = format_decimal(tier.up_to)
    return message


def plan_message(stored: StoredPlan) -> pricing_pb2.Plan:
    plan: Plan = stored.plan
    return pricing_pb2.Plan(
        id=plan_id(plan.code, plan.version),
        tenant_id=stored.tenant_id,
        code=plan.code,
        name=plan.name,
        base_price=format_decimal(plan.base_price),
        currency_code=plan.currency_code,
        billing_interval=f"BILLING_INTERVAL_{plan.billing_interval.value.upper()}",
        tax_inclusive=plan.tax_inclusive,
        meters=[_meter_message(meter) for meter in plan.meters],
        version=plan.version,
        active=stored.is_newest,
        metadata=plan.metadata,
        created_at=wire.timestamp(stored.created_at),
        updated_at=wire.timestamp(stored.created_at),  # a version never changes after it is saved
    )


class PricingServicer(pricing_pb2_grpc.PricingServiceServicer):
    def __init__(self, ledger: Ledger, api: ApiLedger) -> None:
        self.ledger = ledger
        self.api = api

    def CreatePlan(self, request: pricing_pb2.CreatePlanRequest, context: Any) -> pricing_pb2.CreatePlanResponse:
        tenant = wire.tenant(context, request.plan.tenant_id)
        if not request.HasField("plan"):
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "plan: is required")
        with wire.errors_as_status(context):
            if request.plan.description:
                raise InvalidValue("plan.description", "is not stored by this server; use name or metadata")
            with self.ledger.session() as session:
                terms = session.get_terms(tenant)
            metrics = {} if terms is None else dict(terms.terms.metrics)
            plan = parse_plan(plan_mapping(request.plan), "plan", metrics)
            plan = replace(plan, metadata=dict(bounded_metadata(dict(request.plan.metadata), "plan.metadata")))
            stored, _ = self.api.create_plan(tenant, plan)
        return pricing_pb2.CreatePlanResponse(plan=plan_message(stored))

    def GetPlan(self, request: pricing_pb2.GetPlanRequest, context: Any) -> pricing_pb2.GetPlanResponse:
        tenant = wire.tenant(context)
        if not request.id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
        named = parse_plan_id(request.id)
        stored = None if named is None else self.api.plan(tenant, *named)
        if stored is None:
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"id: no plan {request.id!r}")
        return pricing_pb2.GetPlanResponse(plan=plan_message(stored))

    def GetPlanByCode(
        self, request: pricing_pb2.GetPlanByCodeRequest, context: Any
    ) -> pricing_pb2.GetPlanByCodeResponse:
        tenant = wire.tenant(context)
        if not request.code:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "code: is required")
        if request.version < 0:
            wire.abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"version: must not be negative, got {request.version}"
            )
        stored = self.api.plan(tenant, request.code, request.version or None)
        if stored is None:
            version = f" version {request.version}" if request.version else ""
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"code: no plan {request.code!r}{version}")
        return pricing_pb2.GetPlanByCodeResponse(plan=plan_message(stored))

    def ListPlans(self, request: pricing_pb2.ListPlansRequest, context: Any) -> pricing_pb2.ListPlansResponse:
        tenant = wire.tenant(context)
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (str, int))
        cursor = None if after is None else (str(after[0]), int(after[1]))
        plans = self.api.plans(tenant, request.active_only, cursor, limit + 1)
        token = encode_token((plans[limit - 1].plan.code, plans[limit - 1].plan.version)) if len(plans) > limit else ""
        return pricing_pb2.ListPlansResponse(plans=[plan_message(p) for p in plans[:limit]], next_page_token=token)
