"""Field readers of a scenario file: each checks one value and, when it is wrong, raises an error
naming the field by its path (``plans[0].meters[1].unit_price``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from rating.errors import BillingError, InvalidValue
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

T = TypeVar("T")


class Fields:
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


def within(path: str, build: Callable[[], T]) -> T:
    """Place a value's own validation error under the path of the mapping it came from."""
    try:
        return build()
    except BillingError as error:
        if error.field.startswith(path):
            raise
        raise error.at(path) from None


def unique(values: list[T], key: Callable[[T], str], path: str) -> dict[str, T]:
    seen: dict[str, T] = {}
    for index, value in enumerate(values):
        name = key(value)
        if name in seen:
            raise InvalidValue(f"{path}[{index}]", f"{name!r} is defined twice")
        seen[name] = value
    return seen


NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


def event_value(value: object, field: str) -> float:
    """An event value as the wire carries it: a double. Written in the file (a number or a decimal
    string), it is read exactly and must reach the pipeline unchanged, or it is refused naming the
    field: more than 12 fractional digits, 1e26 or more, or no double that carries it (the wire has
    no other form). NaN and infinities pass, for the pipeline to dead-letter (design section 3), and
    so does a float a caller put in the mapping: it is a double already."""
    if isinstance(value, bool):
        raise InvalidValue(field, "expected a number, got a boolean")
    if isinstance(value, float):
        return value
    if isinstance(value, str) and NOT_FINITE.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, int | Decimal | str):
        return exact_double(value, field)
    raise InvalidValue(field, f"expected a number, got {type(value).__name__}")


def event_metadata(value: object, field: str) -> dict[str, str]:
    """Text keys and values within the limits: 32 entries, keys of 1 to 64 characters, values of at
    most 1024, no control characters (rating/limits.py)."""
    if not isinstance(value, Mapping):
        raise InvalidValue(field, f"expected a mapping, got {type(value).__name__}")
    metadata = {str(k): str(v) for k, v in value.items()}
    bounded_metadata(metadata, field)
    return metadata
