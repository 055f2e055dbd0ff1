"""Money: integer minor units of an ISO 4217 currency, and the one rounding function."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from rating.errors import InvalidValue

# ISO 4217 minor-unit exponents that differ from 2. IDR is billed in whole rupiah (exponent 0),
# as Indonesian gateways require, although ISO lists 2.
_EXPONENT_0 = "BIF CLP DJF GNF IDR ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD "
    "GTQ GYD HKD HNL HTG HUF ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL "
    "MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR "
    "PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT "
    "TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}


def currency_exponent(currency: str, field: str = "currency_code") -> int:
    """Digits of the minor unit; unknown codes are rejected rather than guessed."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise InvalidValue(field, f"unknown ISO 4217 currency {currency!r}") from None


def round_half_up(value: Fraction) -> int:
    """Round an exact amount of minor units to an integer, halves away from zero."""
    magnitude = abs(value)
    whole = int(magnitude.numerator * 2 + magnitude.denominator) // (magnitude.denominator * 2)
    return whole if value >= 0 else -whole


def to_minor(amount_major: Decimal | Fraction, currency: str) -> int:
    """Major units (a price times a quantity) to minor units: the one rounding, half-up."""
    return round_half_up(Fraction(amount_major) * 10 ** currency_exponent(currency))


def minor_to_major(amount_minor: int, currency: str) -> Decimal:
    """Minor units back to a major-unit decimal for display (exact)."""
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise InvalidValue("amount", f"minor units must be an int, got {self.amount!r}")
        currency_exponent(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidValue("currency_code", f"cannot mix {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{minor_to_major(self.amount, self.currency)} {self.currency}"
