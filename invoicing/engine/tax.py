"""Tax: rules per region, exclusive by default, or the part of a tax-inclusive gross."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from invoicing.engine.model import InvoiceLineItem, LineType
from rating.errors import InvalidValue
from rating.money import Money, round_half_up
from rating.numbers import format_decimal


@dataclass(frozen=True, slots=True)
class TaxRule:
    region_code: str
    name: str
    rate_percent: Decimal
    is_default: bool = False
    is_active: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.rate_percent <= 100:
            raise InvalidValue("rate_percent", f"must be between 0 and 100, got {self.rate_percent}")


def rules_for(region_code: str | None, rules: Sequence[TaxRule]) -> list[TaxRule]:
    """The active rules of the region; the default rules when the region has none."""
    active = [r for r in rules if r.is_active]
    own = [r for r in active if region_code is not None and r.region_code == region_code]
    return own or [r for r in active if r.is_default]


def tax_amount(base: Money, rule: TaxRule, inclusive: bool) -> Money:
    """Exclusive: base × rate. Inclusive: the part of the gross base that is tax. Rounded half-up."""
    rate = Fraction(rule.rate_percent) / 100
    exact = Fraction(base.amount) - Fraction(base.amount) / (1 + rate) if inclusive else Fraction(base.amount) * rate
    return Money(round_half_up(exact), base.currency)


def tax_lines(base: Money, rules: Sequence[TaxRule], inclusive: bool) -> list[InvoiceLineItem]:
    """One TAX line per applicable rule, each on the same discounted subtotal."""
    lines = []
    for rule in rules:
        rate = format_decimal(rule.rate_percent)
        metadata = {"region_code": rule.region_code, "rate_percent": rate, "inclusive": str(inclusive).lower()}
        suffix = " included" if inclusive else ""
        lines.append(
            InvoiceLineItem(
                LineType.TAX,
                f"{rule.name} {rate}%{suffix}",
                tax_amount(base, rule, inclusive),
                unit_price=rule.rate_percent,
                metadata=metadata,
            )
        )
    return lines
