"""Page sizes and page tokens of the List RPCs. A token is opaque to clients: the URL-safe base64
of the JSON list of the last row's sort key, so the next page starts strictly after it (stable
under inserts, unlike an offset)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from rating.errors import InvalidValue

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_TOKEN = 1024

Cursor = tuple[str | int, ...]


def page_size(requested: int) -> int:
    """0 means the default; above the maximum is capped (as AIP-158 asks), negative is an error."""
    if requested < 0:
        raise InvalidValue("page_size", f"must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(cursor), separators=(",", ":")).encode()).decode()


def decode_token(token: str, shape: Sequence[type]) -> Cursor | None:
    """The cursor of a page token whose parts have the types of ``shape``; None for ""."""
    if not token:
        return None
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError("too long")
        parts = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(parts, list) or len(parts) != len(shape):
            raise ValueError("wrong shape")
        if any(type(part) is not kind for part, kind in zip(parts, shape, strict=True)):
            raise ValueError("wrong types")
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidValue("page_token", "not a token this server returned") from None
    return tuple(parts)
