"""The catalog: metrics, plans and their meters. Pricing is defined here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from rating.errors import InvalidValue
from rating.money import currency_exponent
from rating.periods import BillingInterval


class MetricType(StrEnum):
    COUNTER = "COUNTER"
    GAUGE = "GAUGE"


class Aggregation(StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    MAX = "MAX"
    LATEST = "LATEST"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    TIME_WEIGHTED_SUM = "TIME_WEIGHTED_SUM"


class PricingModel(StrEnum):
    FLAT = "FLAT"
    PER_UNIT = "PER_UNIT"
    TIERED = "TIERED"
    PACKAGE = "PACKAGE"


class TierMode(StrEnum):
    GRADUATED = "GRADUATED"
    VOLUME = "VOLUME"


@dataclass(frozen=True, slots=True)
class Metric:
    """What is metered (``UsageMetricDefinition``) and how a period's events fold into one quantity."""

    code: str
    type: MetricType = MetricType.COUNTER
    aggregation: Aggregation = Aggregation.SUM
    unit: str = ""
    field: str | None = None

    def __post_init__(self) -> None:
        if not self.code:
            raise InvalidValue("code", "a metric needs a code")
        if self.aggregation is Aggregation.UNIQUE_COUNT and not self.field:
            raise InvalidValue("field", "UNIQUE_COUNT needs the metadata field it counts")
        if self.aggregation is Aggregation.TIME_WEIGHTED_SUM and self.type is not MetricType.GAUGE:
            raise InvalidValue("aggregation", "TIME_WEIGHTED_SUM is for GAUGE metrics")


@dataclass(frozen=True, slots=True)
class Tier:
    """``up_to`` is an inclusive upper bound on billable units; ``None`` for the last tier."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PlanMeter:
    """How one metric is priced on a plan."""

    metric_code: str
    pricing_model: PricingModel
    unit_price: Decimal = Decimal(0)
    included_units: Decimal = Decimal(0)
    overage_unit_price: Decimal | None = None
    package_size: Decimal | None = None
    tier_mode: TierMode = TierMode.GRADUATED
    tiers: tuple[Tier, ...] = ()

    def __post_init__(self) -> None:
        if self.pricing_model is PricingModel.TIERED:
            if not self.tiers:
                raise InvalidValue("tiers", "TIERED pricing needs at least one tier")
            bounds = [tier.up_to for tier in self.tiers]
            if bounds[-1] is not None:
                raise InvalidValue(f"tiers[{len(bounds) - 1}].up_to", "the last tier has no bound (null)")
            for index, bound in enumerate(bounds[:-1]):
                if bound is None:
                    raise InvalidValue(f"tiers[{index}].up_to", "only the last tier may be unbounded")
                previous = bounds[index - 1] if index else Decimal(0)
                if index and previous is not None and bound <= previous:
                    raise InvalidValue(f"tiers[{index}].up_to", "tier bounds must increase")
        if self.pricing_model is PricingModel.PACKAGE and (self.package_size is None or self.package_size <= 0):
            raise InvalidValue("package_size", "PACKAGE pricing needs a package_size above 0")

    @property
    def is_metered(self) -> bool:
        return self.pricing_model is not PricingModel.FLAT


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan version: base price, interval and meters. A snapshot of it prices every invoice."""

    code: str
    currency_code: str
    base_price: Decimal = Decimal(0)
    billing_interval: BillingInterval = BillingInterval.MONTH
    tax_inclusive: bool = False
    meters: tuple[PlanMeter, ...] = ()
    name: str = ""
    version: int = 1
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        currency_exponent(self.currency_code)
        seen: set[str] = set()
        for index, meter in enumerate(self.meters):
            if meter.metric_code in seen:
                raise InvalidValue(f"meters[{index}].metric_code", f"{meter.metric_code!r} is priced twice")
            seen.add(meter.metric_code)

    def meter(self, metric_code: str) -> PlanMeter | None:
        return next((m for m in self.meters if m.metric_code == metric_code), None)
