"""Scenario files (design section 5): YAML or JSON parsed into frozen domain values at the edge.

Every error names the field it found wrong, as a path: ``plans[0].meters[1].unit_price``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import yaml

from invoicing.engine.credit import CreditType
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.subscriptions import Subscription
from invoicing.engine.tax import TaxRule
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier, TierMode
from rating.errors import BillingError, InvalidValue, UnknownReference
from rating.limits import (
    MAX_CODE,
    MAX_COUNT,
    MAX_KEY,
    MAX_METADATA_KEY,
    MAX_TEXT,
    bounded_metadata,
    bounded_price,
    bounded_text,
    shown,
)
from rating.numbers import decimal_from_double, exact_double, parse_decimal
from rating.periods import BillingInterval, epoch_ms, zone
from streams.operators.records import UsageEvent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """A usage event of a scenario file. ``value`` is the wire's double; read from a file's text it
    carries the decimal written exactly (``decimal_from_double`` gives it back), or the file was refused."""

    id: str
    subscription_id: str
    metric_code: str
    value: float
    recorded_at: datetime
    arrives_at: datetime
    idempotency_key: str
    metadata: Mapping[str, str]
    tenant_id: str

    def usage_event(self) -> UsageEvent:
        """The event as a producer sends it (the pipeline's input)."""
        return UsageEvent(
            self.id,
            self.tenant_id,
            self.subscription_id,
            self.metric_code,
            self.value,
            epoch_ms(self.recorded_at),
            self.idempotency_key,
            self.metadata,
        )


@dataclass(frozen=True, slots=True)
class Action:
    at: datetime
    type: str
    subscription_id: str
    plan_code: str | None = None
    amount: Decimal | None = None
    credit_type: CreditType = CreditType.BALANCE
    at_period_end: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Scenario:
    tenant_id: str
    metrics: tuple[Metric, ...]
    plans: tuple[Plan, ...]
    tax_rules: tuple[TaxRule, ...]
    coupons: tuple[Coupon, ...]
    subscriptions: tuple[Subscription, ...]
    events: tuple[ScenarioEvent, ...]
    actions: tuple[Action, ...]
    run_until: datetime
    grace_period: timedelta = timedelta(0)

    def plan(self, code: str) -> Plan:
        return next(p for p in self.plans if p.code == code)


class _Fields:
    """Reads one mapping of the file, naming each field by its path."""

    def __init__(self, raw: object, path: str) -> None:
        if not isinstance(raw, Mapping):
            raise InvalidValue(path or "scenario", f"expected a mapping, got {type(raw).__name__}")
        self.raw = raw
        self.path = path
        self.read: set[str] = set()

    def checked(self, value: T, ignore_prefix: str | None = None) -> T:
        """``value``, once every key of the mapping was read: an unknown key (a typo such as
        ``base_prise``) is an error, not a silently missing setting."""
        unknown = [
            key
            for key in self.raw
            if key not in self.read and not (ignore_prefix and str(key).startswith(ignore_prefix))
        ]
        if unknown:
            key = str(unknown[0])
            key = key if len(key) <= MAX_CODE else f"{key[:32]}…"
            raise InvalidValue(self.name(key), f"unknown key; known here: {', '.join(sorted(self.read))}")
        return value

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        self.read.add(key)
        return self.raw.get(key) is not None

    def get(self, key: str, parse: Callable[[object, str], T], default: T | None = None, required: bool = False) -> T:
        self.read.add(key)
        value = self.raw.get(key)
        if value is None:
            if required:
                raise InvalidValue(self.name(key), "is required")
            return default  # type: ignore[return-value]
        return parse(value, self.name(key))

    def items(self, key: str) -> list[tuple[object, str]]:
        self.read.add(key)
        value = self.raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidValue(self.name(key), f"expected a list, got {type(value).__name__}")
        return [(item, f"{self.name(key)}[{index}]") for index, item in enumerate(value)]


def text(value: object, field: str, limit: int = MAX_CODE) -> str:
    """An id or code: 1 to 128 printable characters (rating/limits.py); a number in the file is its text."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidValue(field, f"expected text, got {type(value).__name__}")
    return bounded_text(str(value), field, limit)


def key_text(value: object, field: str) -> str:
    """An idempotency key or event id: up to 256 characters."""
    return text(value, field, MAX_KEY)


def long_text(value: object, field: str) -> str:
    """A name, unit or reason: up to 1024 characters."""
    return text(value, field, MAX_TEXT)


def metadata_key(value: object, field: str) -> str:
    """The metadata key a UNIQUE_COUNT metric counts: up to 64 characters, as in an event."""
    return text(value, field, MAX_METADATA_KEY)


def flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(field, f"expected true or false, got {shown(value)}")
    return value


def whole(value: object, field: str) -> int:
    """A count (days, periods): 0 to 100,000."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field, f"expected a whole number, got {shown(value)}")
    if not 0 <= value <= MAX_COUNT:
        raise InvalidValue(field, f"must be between 0 and {MAX_COUNT:,}, got {shown(value)}")
    return value


def decimal(value: object, field: str) -> Decimal:
    """A price or quantity: a decimal string, an int, or a number written in the file (read exactly
    from its text by the loader); a float a caller put in the mapping passes the one double door."""
    if isinstance(value, float):
        number = decimal_from_double(value, field)
        if number < 0:
            raise InvalidValue(field, f"must not be negative, got {value!r}")
        return number
    return parse_decimal(value, field)


def price(value: object, field: str) -> Decimal:
    """A price or amount in major units, as ``decimal``, at most 10^12 so that invoices hold it."""
    return bounded_price(decimal(value, field), field)


def instant(value: object, field: str) -> datetime:
    """An RFC 3339 time with an offset (``2026-01-05T10:00:00Z``), as UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        raise InvalidValue(field, f"expected a time with an offset, got the date {value}")
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidValue(field, f"not an RFC 3339 time: {shown(value)}") from None
    else:
        raise InvalidValue(field, f"expected an RFC 3339 time, got {type(value).__name__}")
    if parsed.tzinfo is None:
        raise InvalidValue(field, f"needs a UTC offset or Z: {shown(value)}")
    return parsed.astimezone(UTC)


def duration(value: object, field: str) -> timedelta:
    """Seconds as a number, or text like ``90s``, ``15m``, ``2h``, ``3d``; at most 100,000 days."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        seconds = value
    elif isinstance(value, str) and value[-1:] in units and value[:-1].isdigit() and len(value) <= 20:
        seconds = int(value[:-1]) * units[value[-1]]
    if seconds is None:
        raise InvalidValue(field, f"expected seconds or a duration like '2h' or '3d', got {shown(value)}")
    if seconds > MAX_COUNT * units["d"]:
        raise InvalidValue(field, f"at most {MAX_COUNT:,} days, got {shown(value)}")
    return timedelta(seconds=seconds)


def choice(enum: Callable[[str], T], aliases: Mapping[str, str] | None = None) -> Callable[[object, str], T]:
    """An enum value, matched case-insensitively (``month``, ``MONTH``); ``aliases`` map old names."""

    def parse(value: object, field: str) -> T:
        raw = text(value, field)
        for candidate in ((aliases or {}).get(raw.upper(), raw), raw.upper(), raw.lower()):
            try:
                return enum(candidate)
            except ValueError:
                continue
        raise InvalidValue(field, f"unknown value {shown(raw)}")

    return parse


def _wrap(path: str, build: Callable[[], T]) -> T:
    """Place a value's own validation error under the path of the mapping it came from."""
    try:
        return build()
    except BillingError as error:
        if error.field.startswith(path):
            raise
        raise error.at(path) from None


def _metric(raw: object, path: str) -> Metric:
    f = _Fields(raw, path)
    return f.checked(
        _wrap(
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
    f = _Fields(raw, path)
    return f.checked(
        Tier(
            up_to=f.get("up_to", decimal),
            unit_price=f.get("unit_price", price, Decimal(0)),
            flat_fee=f.get("flat_fee", price, Decimal(0)),
        )
    )


def _meter(raw: object, path: str) -> PlanMeter:
    f = _Fields(raw, path)
    tiers = tuple(_tier(item, p) for item, p in f.items("tiers"))
    return f.checked(
        _wrap(
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


def _plan(raw: object, path: str, metrics: Mapping[str, Metric]) -> Plan:
    f = _Fields(raw, path)
    meters = tuple(_meter(item, p) for item, p in f.items("meters"))
    for index, meter in enumerate(meters):
        if meter.metric_code not in metrics:
            raise UnknownReference(f"{path}.meters[{index}].metric_code", f"no metric {meter.metric_code!r}")
    return f.checked(
        _wrap(
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
    f = _Fields(raw, path)
    return f.checked(
        _wrap(
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
    f = _Fields(raw, path)
    return f.checked(
        _wrap(
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


def _subscription(raw: object, path: str, tenant_id: str, plans: Mapping[str, Plan], coupons: set[str]) -> Subscription:
    f = _Fields(raw, path)
    plan_code = f.get("plan_code", text, required=True)
    if plan_code not in plans:
        raise UnknownReference(f.name("plan_code"), f"no plan {plan_code!r}")
    coupon = f.get("coupon", text)
    if coupon is not None and coupon not in coupons:
        raise UnknownReference(f.name("coupon"), f"no coupon {coupon!r}")
    timezone = f.get("timezone", text, "UTC")
    zone(timezone, f.name("timezone"))
    return f.checked(
        _wrap(
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


_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


def _number(value: object, field: str) -> float:
    """An event value as the wire carries it: a double. Written in the file (a number or a decimal
    string), it is read exactly and must reach the pipeline unchanged, or it is refused naming the
    field: more than 12 fractional digits, 1e26 or more, or no double that carries it (the wire has
    no other form). NaN and infinities pass, for the pipeline to dead-letter (design section 3), and
    so does a float a caller put in the mapping: it is a double already."""
    if isinstance(value, bool):
        raise InvalidValue(field, "expected a number, got a boolean")
    if isinstance(value, float):
        return value
    if isinstance(value, str) and _NOT_FINITE.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, int | Decimal | str):
        return exact_double(value, field)
    raise InvalidValue(field, f"expected a number, got {type(value).__name__}")


def _metadata(value: object, field: str) -> dict[str, str]:
    """Text keys and values within the limits: 32 entries, keys of 1 to 64 characters, values of at
    most 1024, no control characters (rating/limits.py)."""
    if not isinstance(value, Mapping):
        raise InvalidValue(field, f"expected a mapping, got {type(value).__name__}")
    metadata = {str(k): str(v) for k, v in value.items()}
    bounded_metadata(metadata, field)
    return metadata


def _event(raw: object, path: str, index: int, tenant_id: str) -> ScenarioEvent:
    f = _Fields(raw, path)
    recorded_at = f.get("recorded_at", instant, required=True)
    arrives_at = f.get("arrives_at", instant, recorded_at)
    if arrives_at < recorded_at:
        raise InvalidValue(f.name("arrives_at"), "an event cannot arrive before it was recorded")
    return f.checked(
        ScenarioEvent(
            id=f.get("id", key_text, f"evt_{index}"),
            subscription_id=f.get("subscription_id", text, ""),
            metric_code=f.get("metric_code", text, ""),
            value=f.get("value", _number, required=True),
            recorded_at=recorded_at,
            arrives_at=arrives_at,
            idempotency_key=f.get("idempotency_key", key_text, ""),
            metadata=f.get("metadata", _metadata, {}),
            tenant_id=f.get("tenant_id", text, tenant_id),
        )
    )


ACTIONS = ("change_plan", "credit_note", "cancel")


def _action(raw: object, path: str, plans: Mapping[str, Plan], subscriptions: Mapping[str, Subscription]) -> Action:
    f = _Fields(raw, path)
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
        )
    )


def _unique(values: list[T], key: Callable[[T], str], path: str) -> dict[str, T]:
    seen: dict[str, T] = {}
    for index, value in enumerate(values):
        name = key(value)
        if name in seen:
            raise InvalidValue(f"{path}[{index}]", f"{name!r} is defined twice")
        seen[name] = value
    return seen


def parse_scenario(raw: object) -> Scenario:
    """A scenario from parsed YAML/JSON; raises BillingError naming the field at fault."""
    f = _Fields(raw, "")
    tenant_id = f.get("tenant_id", text, "default")
    metrics = _unique([_metric(i, p) for i, p in f.items("metrics")], lambda m: m.code, "metrics")
    plans = _unique([_plan(i, p, metrics) for i, p in f.items("plans")], lambda p: p.code, "plans")
    tax_rules = tuple(_tax_rule(i, p) for i, p in f.items("tax_rules"))
    coupons = _unique([_coupon(i, p) for i, p in f.items("coupons")], lambda c: c.code, "coupons")
    subscriptions = _unique(
        [_subscription(i, p, tenant_id, plans, set(coupons)) for i, p in f.items("subscriptions")],
        lambda s: s.id,
        "subscriptions",
    )
    events = tuple(_event(i, p, n, tenant_id) for n, (i, p) in enumerate(f.items("events")))
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
    )
    return f.checked(scenario, ignore_prefix="expected")


class ExactLoader(yaml.SafeLoader):
    """Safe YAML whose numbers are never doubles: a float is the Decimal of its text (``.nan`` and
    ``.inf`` stay floats, for the pipeline to reject), an int longer than any bound stays text."""


_WIDEST_INT = 40
"""Digits of the longest int read as an int: more is beyond every bound (and past 4,300 digits
Python's int() refuses the text with a ValueError instead of a YAML or JSON error)."""


def _yaml_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    written = str(loader.construct_scalar(node))
    if _NOT_FINITE.fullmatch(written.replace(".", "", 1)):
        return loader.construct_yaml_float(node)
    try:
        return Decimal(written.replace("_", ""))  # YAML 1.1 allows 1_000.5
    except InvalidOperation:  # sexagesimal (1:30.5): left as text, refused where a number is expected
        return written


def _yaml_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    written = str(loader.construct_scalar(node))
    return written if len(written) > _WIDEST_INT else loader.construct_yaml_int(node)


def _json_int(written: str) -> int | str:
    return written if len(written) > _WIDEST_INT else int(written)


ExactLoader.add_constructor("tag:yaml.org,2002:float", _yaml_float)
ExactLoader.add_constructor("tag:yaml.org,2002:int", _yaml_int)


def parse_json(content: str) -> Any:
    """JSON with exact numbers: a number with a point or exponent is the Decimal of its text."""
    return json.loads(content, parse_float=Decimal, parse_int=_json_int)


def parse_yaml(content: str) -> Any:
    """YAML (safe) with exact numbers (``ExactLoader``)."""
    return yaml.load(content, Loader=ExactLoader)  # a SafeLoader with two number constructors


def read_text(path: Path, field: str) -> str:
    """The UTF-8 text of ``path``; InvalidValue naming ``field`` when it cannot be read so."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidValue(field, f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise InvalidValue(field, f"{path} is not UTF-8 text (byte {error.start})") from None


def load_scenario(path: Path) -> Scenario:
    """Read a YAML or JSON scenario file (JSON is YAML, but its own errors read better)."""
    content = read_text(path, "scenario")
    try:
        raw: Any = parse_json(content) if path.suffix == ".json" else parse_yaml(content)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise InvalidValue("scenario", f"{path} is not valid {kind}: {error}") from None
    return parse_scenario(raw)
