"""What comes in is bounded (design section 3, docs/semantics.md "Limits"): ids, codes, keys and
metadata have a length limit and no control characters; prices fit an invoice. The same limits at
every door: scenario files and ``billing catalog apply``, ``billing produce --file``, the SDK, and
the usage worker, which dead-letters an event beyond them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from rating.errors import InvalidValue

MAX_CODE = 128
"""Characters of an id or code: tenant, subscription, metric, plan, coupon, region, timezone."""
MAX_KEY = 256
"""Characters of an idempotency key, and of an event id (which defaults to its key in the SDK)."""
MAX_TEXT = 1024
"""Characters of free text: a plan's or tax rule's name, a metric's unit, an action's reason."""
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY = 64
"""Characters of a metadata key (also a UNIQUE_COUNT metric's ``field``)."""
MAX_METADATA_VALUE = 1024
MAX_PRICE = Decimal(10) ** 12
"""Largest price or amount in major units (base price, unit and overage prices, tier fees, coupon
amounts, credit notes, trial balances). Invoice amounts are int64 minor units (the ledger's
BIGINT columns, below 9.2e18): at this bound and 4 decimals (the widest currency exponent) a line
still holds 922 units, at 2 decimals 92,233, in whole rupiah 9.2 million."""
MAX_COUNT = 100_000
"""Largest whole number of a file (trial days, coupon periods): beyond, dates leave the calendar."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 and C1 controls, DEL, and lone surrogates (which no UTF-8 encoder can write)."""


def printable(*texts: str) -> bool:
    """Whether none of ``texts`` holds a control character (one regex pass: the worker's fast path)."""
    return _CONTROL.search("".join(texts)) is None


def text_problem(text: str, limit: int) -> str | None:
    """Why ``text`` is not 1 to ``limit`` characters of printable text, or None when it is."""
    if len(text) > limit:
        return f"at most {limit} characters, got {len(text):,}"
    if not text.strip():
        return "must not be empty" if not text else "must not be blank"
    control = _CONTROL.search(text)
    if control is not None:
        return f"control character U+{ord(control.group()):04X} at position {control.start()}"
    return None


def metadata_problem(metadata: Mapping[str, str]) -> str | None:
    """Why ``metadata`` breaks the limits (entries, key and value lengths, control characters), or None."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        return f"at most {MAX_METADATA_ENTRIES} entries, got {len(metadata):,}"
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return "keys and values must be text"
        problem = text_problem(key, MAX_METADATA_KEY)
        if problem is not None:
            return f"key {_cut(key)}: {problem}"
        if len(value) > MAX_METADATA_VALUE:
            return f"value of {_cut(key)}: at most {MAX_METADATA_VALUE} characters, got {len(value):,}"
        control = _CONTROL.search(value)  # a value may be empty
        if control is not None:
            return f"value of {_cut(key)}: control character U+{ord(control.group()):04X} at position {control.start()}"
    return None


def bounded_text(text: str, field: str, limit: int = MAX_CODE) -> str:
    """``text`` when it is 1 to ``limit`` printable characters; else InvalidValue naming ``field``."""
    problem = text_problem(text, limit)
    if problem is not None:
        raise InvalidValue(field, problem)
    return text


def bounded_metadata(metadata: Mapping[str, str], field: str) -> Mapping[str, str]:
    """``metadata`` when it is within the limits; else InvalidValue naming ``field``."""
    problem = metadata_problem(metadata)
    if problem is not None:
        raise InvalidValue(field, problem)
    return metadata


def bounded_price(price: Decimal, field: str) -> Decimal:
    """``price`` when its magnitude is at most ``MAX_PRICE``; else InvalidValue naming ``field``."""
    if price.copy_abs() > MAX_PRICE:
        raise InvalidValue(field, f"at most {MAX_PRICE:,} (10^12), got {price:f}")
    return price


def _cut(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:32]!r}…"


def shown(value: object) -> str:
    """A value for an error message: a Decimal as its digits, anything else as its repr, cut short
    when long (never a 10 MB message)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a number of {value.bit_length():,} bits"  # repr() refuses ints of over 4,300 digits
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:40]!r}… ({len(value):,} characters)"
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text):,} characters)"
