"""Exact decimals: the one door from float to Decimal, parsing and printing."""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from fractions import Fraction

from rating.errors import InvalidValue
from rating.limits import shown

SCALE = 12
"""Fractional digits kept for quantities and prices (ClickHouse ``Decimal128(12)``)."""
QUANTUM = Decimal(1).scaleb(-SCALE)
LIMIT = Decimal(10) ** 26
"""Magnitudes from here on do not fit ``Decimal128(12)``."""
_EXACT = Context(prec=60)
"""Wide enough for any value below ``LIMIT`` at 12 places (38 digits); values are bounded before use."""
_SAFE_INT = 2**53
WIDE = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
"""The context for adding quantities and multiplying them by milliseconds (windows, time-weighted
integrals). Values are below 1e26 with at most 12 fractional digits (38 digits); a sum of any
realistic number of them or a value × ms product needs under 70, so nothing rounds, where the
thread's default 28-digit context silently would. Inexact traps: a rounding would be an error,
never a wrong total."""
_PLAIN = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
"""A plain decimal string: ASCII digits, an optional point and exponent; no ``_`` grouping, no NaN/Infinity."""


def decimal_from_double(value: float, field: str = "value") -> Decimal:
    """Read a double as the shortest decimal that round-trips it, rounded half-even to 12 places."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(field, f"expected a number, got {type(value).__name__}")
    if isinstance(value, int):
        return _bounded(Decimal(value), field)  # an int is exact as it is (``int.is_integer`` is 3.12+)
    if not math.isfinite(value):
        raise InvalidValue(field, f"must be finite, got {value}")
    if value.is_integer() and -_SAFE_INT < value < _SAFE_INT:
        return Decimal(int(value))  # whole numbers (most counters) are exact as they are
    # Bound before rounding: quantizing 1e300 to 12 places would need 313 digits.
    shortest = _bounded(Decimal(repr(value)), field)
    return _bounded(shortest.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=_EXACT).normalize(_EXACT), field)


def parse_decimal(text: object, field: str, *, allow_negative: bool = False) -> Decimal:
    """Parse a price or quantity given as a decimal string (or an int or Decimal); at most 12 fractional digits."""
    if isinstance(text, bool):
        raise InvalidValue(field, "expected a decimal string, got a boolean")
    if isinstance(text, float):
        raise InvalidValue(field, f"write decimals as strings to keep them exact, got {text!r}")
    if isinstance(text, int):
        number = Decimal(text)
    elif isinstance(text, Decimal):  # a number read from a file's text (billing/simulate/documents.py)
        number = text
    elif isinstance(text, str):
        if _PLAIN.fullmatch(text.strip()) is None:  # Decimal() also takes '1_000', 'NaN', non-ASCII digits
            raise InvalidValue(field, f"not a decimal number: {shown(text)}")
        try:
            number = Decimal(text.strip())
        except InvalidOperation:  # an exponent beyond what Decimal can hold
            raise InvalidValue(field, f"not a decimal number: {shown(text)}") from None
    else:
        raise InvalidValue(field, f"expected a decimal string, got {type(text).__name__}")
    if not number.is_finite():
        raise InvalidValue(field, f"must be finite, got {shown(text)}")
    # Bound first: the exactness check below is then within the 60-digit context for any input length.
    _bounded(number, field)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -SCALE and number != number.quantize(QUANTUM, context=_EXACT):
        raise InvalidValue(field, f"at most {SCALE} fractional digits, got {shown(text)}")
    if number < 0 and not allow_negative:
        raise InvalidValue(field, f"must not be negative, got {shown(text)}")
    return _bounded(number, field)


def exact_double(number: Decimal | int | str, field: str = "value") -> float:
    """The double that carries ``number`` exactly through the wire's ``double`` (``decimal_from_double``
    reads it back as ``number``), or InvalidValue: more than 12 fractional digits, a magnitude of
    1e26 or more, or no double close enough (``9007199254740993``, ``12345678901234567.25``)."""
    exact = parse_decimal(number, field, allow_negative=True)
    double = float(exact)
    if decimal_from_double(double, field) != exact:
        raise InvalidValue(field, f"{exact} has no exact double; round it to at most 15 significant digits")
    return double


def _bounded(number: Decimal, field: str) -> Decimal:
    if number.copy_abs() >= LIMIT:  # copy_abs is exact; abs() rounds to the ambient context's 28 digits
        raise InvalidValue(field, f"magnitude must be below 1e26, got {shown(number)}")
    return number


def fraction_to_decimal(value: Fraction) -> Decimal:
    """A rational rounded half-even to 12 fractional digits (for reporting derived quantities)."""
    scaled = value * 10**SCALE
    whole = round(scaled)  # Fraction.__round__ rounds half to even
    return (Decimal(whole).scaleb(-SCALE, _EXACT)).normalize(_EXACT)


def format_decimal(number: Decimal | Fraction) -> str:
    """Plain decimal text without exponent or trailing zeros: ``1500``, ``0.002``."""
    if isinstance(number, Fraction):
        number = fraction_to_decimal(number)
    if number == 0:
        return "0"
    text = format(number.normalize(_EXACT), "f")
    return text
