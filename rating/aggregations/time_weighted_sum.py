"""TIME_WEIGHTED_SUM (GAUGE): value × hours; each value holds until the next event, the last until
the interval ends; zero before the first event (e.g. GB-hours)."""

from decimal import Decimal, localcontext
from fractions import Fraction

from rating.aggregations.window import WindowTotals
from rating.numbers import WIDE, fraction_to_decimal

MS_PER_HOUR = 3_600_000


def quantity(totals: WindowTotals, end_ms: int) -> Decimal:
    if totals.last is None:
        return Decimal(0)
    with localcontext(WIDE):
        integral = totals.tw_integral + totals.last.value * (end_ms - totals.last.at_ms)
    return fraction_to_decimal(Fraction(integral) / MS_PER_HOUR)
