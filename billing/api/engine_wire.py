"""InvoiceEngineService's messages as engine values and back: a ChargeComponent is an
``InvoiceLineItem`` (it carries no id until an invoice stores it), a PlanSnapshot is a ``Plan``
read by the same reader as ``CreatePlan`` and scenario files (``parse_plan``), so a snapshot is
valid exactly when a plan with those prices could be created."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from billing.api import wire
from billing.api.pricing_service import plan_mapping
from billing.simulate.scenario_file import parse_plan
from invoicing.engine.model import InvoiceLineItem, LineType
from rating.catalog import Metric, Plan
from rating.errors import BillingError, InvalidValue
from rating.limits import MAX_TEXT, bounded_metadata, bounded_text
from rating.money import Money
from rating.numbers import format_decimal, parse_decimal
from schemas.generated.smallbiznis.common.v1 import money_pb2
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2 as engine_pb2
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2

_LINE_PREFIX = "INVOICE_LINE_ITEM_TYPE_"


def money_in(message: money_pb2.Money, field: str, currency: str | None = None) -> Money:
    """A request's Money; ``currency`` when given is the one it must be in."""
    try:
        amount = Money(message.units, message.currency_code)
    except InvalidValue as error:
        raise error.at(field) from None
    if currency is not None and amount.currency != currency:
        raise InvalidValue(f"{field}.currency_code", f"must be {currency}, got {amount.currency!r}")
    return amount


def required_money(request: Any, name: str, currency: str | None = None) -> Money:
    if not request.HasField(name):
        raise InvalidValue(name, "is required")
    return money_in(getattr(request, name), name, currency)


def line_in(message: engine_pb2.ChargeComponent, field: str, currency: str) -> InvoiceLineItem:
    """A request's ChargeComponent as an engine line, in the invoice's ``currency``."""
    if message.type == invoice_pb2.INVOICE_LINE_ITEM_TYPE_UNSPECIFIED:
        raise InvalidValue(f"{field}.type", "is required")
    kind = LineType(invoice_pb2.InvoiceLineItemType.Name(message.type).removeprefix(_LINE_PREFIX))
    if not message.HasField("amount"):
        raise InvalidValue(f"{field}.amount", "is required")
    amount = money_in(message.amount, f"{field}.amount", currency)
    quantity = unit_price = None
    if message.HasField("quantity"):
        quantity = parse_decimal(message.quantity, f"{field}.quantity", allow_negative=True)
    if message.HasField("unit_price"):
        unit_price = parse_decimal(message.unit_price, f"{field}.unit_price", allow_negative=True)
    try:
        bounded_text(message.description, "description", MAX_TEXT)
        metadata = dict(bounded_metadata(dict(message.metadata), "metadata"))
    except BillingError as error:
        raise error.at(field) from None
    metric = message.metric_code or None
    return InvoiceLineItem(kind, message.description, amount, quantity, unit_price, metric, metadata)


def lines_in(messages: Sequence[engine_pb2.ChargeComponent], field: str, currency: str) -> list[InvoiceLineItem]:
    return [line_in(message, f"{field}[{index}]", currency) for index, message in enumerate(messages)]


def line_out(line: InvoiceLineItem) -> engine_pb2.ChargeComponent:
    message = engine_pb2.ChargeComponent(
        description=line.description,
        amount=wire.money(line.amount),
        type=f"{_LINE_PREFIX}{line.type.value}",
        metric_code=line.metric_code or "",
        metadata={key: str(value) for key, value in line.metadata.items()},
    )
    if line.quantity is not None:
        message.quantity = format_decimal(line.quantity)
    if line.unit_price is not None:
        message.unit_price = format_decimal(line.unit_price)
    return message


def plan_in(snapshot: engine_pb2.PlanSnapshot, metrics: Mapping[str, Metric]) -> Plan:
    """The plan a snapshot prices with; errors name the field under ``plan_snapshot.``."""
    for index, meter in enumerate(snapshot.meters):
        if meter.metadata:
            raise InvalidValue(f"plan_snapshot.meters[{index}].metadata", "meter metadata prices nothing; leave it out")
    as_plan = pricing_pb2.Plan(
        code=snapshot.plan_code,
        name=snapshot.plan_name,
        currency_code=snapshot.currency_code,
        base_price=snapshot.base_price,
        billing_interval=snapshot.billing_interval,
        tax_inclusive=snapshot.tax_inclusive,
        # MeterPriceSnapshot and PlanMeter share every field number and type
        meters=[pricing_pb2.PlanMeter.FromString(meter.SerializeToString()) for meter in snapshot.meters],
    )
    mapping = plan_mapping(as_plan)
    if mapping["code"] is None:
        raise InvalidValue("plan_snapshot.plan_code", "is required")
    if snapshot.plan_version < 1:
        raise InvalidValue("plan_snapshot.plan_version", f"must be 1 or more, got {snapshot.plan_version}")
    return replace(parse_plan(mapping, "plan_snapshot", metrics), version=snapshot.plan_version)
