"""InvoiceEngineService's messages as engine values and back: a ChargeComponent is an
``InvoiceLineItem`` (it carries no id until an invoice stores it), a PlanSnapshot is a ``Plan``
read by the same reader as ``CreatePlan`` and scenario files (``parse_plan``), so a snapshot is
valid exactly when a plan with those prices could be created."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from fractions import Fraction
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
from rating.periods import Period
from rating.pricing.charge import TierCharge
from rating.rate import RatingResult, RatingResultItem
from schemas.generated.smallbiznis.common.v1 import money_pb2
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2 as engine_pb2
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2
from schemas.generated.smallbiznis.rating.v1 import rating_pb2

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


def _fraction(metadata: Mapping[str, str], key: str, field: str) -> Fraction:
    if key not in metadata:
        raise InvalidValue(f"{field}.metadata", f"{key!r} is required (the rating's breakdown)")
    return Fraction(parse_decimal(metadata[key], f"{field}.metadata[{key!r}]", allow_negative=False))


def _tiers(metadata: Mapping[str, str], field: str) -> tuple[TierCharge, ...]:
    tiers, n = [], 1
    while f"tier_{n}_units" in metadata:
        at = f"{field}.metadata"
        tiers.append(
            TierCharge(
                n - 1,
                _fraction(metadata, f"tier_{n}_units", field),
                parse_decimal(metadata.get(f"tier_{n}_unit_price"), f"{at}['tier_{n}_unit_price']"),
                parse_decimal(metadata.get(f"tier_{n}_flat_fee"), f"{at}['tier_{n}_flat_fee']"),
                _fraction(metadata, f"tier_{n}_amount", field),
            )
        )
        n += 1
    return tuple(tiers)


def rating_in(message: rating_pb2.RatingResult, currency: str) -> RatingResult:
    """A RatingResult as ``RateSubscription`` answers it, read back (its breakdown from each item's
    metadata, so the USAGE lines carry it unchanged)."""
    items = []
    for index, item in enumerate(message.items):
        field = f"rating_result.items[{index}]"
        metadata = dict(item.metadata)
        if not item.HasField("amount"):
            raise InvalidValue(f"{field}.amount", "is required")
        items.append(
            RatingResultItem(
                metric_code=bounded_text(item.metric_code, f"{field}.metric_code"),
                quantity=parse_decimal(item.quantity, f"{field}.quantity"),
                amount=money_in(item.amount, f"{field}.amount", currency),
                included_units=_fraction(metadata, "included_units", field),
                billable_units=_fraction(metadata, "billable_units", field),
                unbilled_units=_fraction(metadata, "unbilled_units", field),
                unit_price=parse_decimal(item.unit_price, f"{field}.unit_price")
                if item.HasField("unit_price")
                else None,
                tiers=_tiers(metadata, field),
            )
        )
    try:
        proration = Fraction(message.proration or "1")
    except (ValueError, ZeroDivisionError):
        raise InvalidValue("rating_result.proration", f"not a fraction: {message.proration!r}") from None
    if not 0 <= proration <= 1:
        raise InvalidValue("rating_result.proration", f"must be between 0 and 1, got {message.proration}")
    start = wire.instant(message.period_start, "rating_result.period_start")
    end = wire.instant(message.period_end, "rating_result.period_end")
    if end <= start:
        raise InvalidValue("rating_result.period_end", "must be after period_start")
    rated_at = wire.instant(message.rated_at, "rating_result.rated_at")
    period = Period(start, end)
    return RatingResult(
        message.subscription_id, message.plan_code, message.plan_version, period, proration, tuple(items), rated_at
    )
