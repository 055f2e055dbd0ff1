"""How long the dead-letter topics keep a letter: ``$BILLING_DLQ_RETENTION_DAYS`` days, a year by
default. For every command that creates those topics (worker, invoicer, loop, ``billing dlq``); a
module of its own, so the worker does not import ``billing.dlq``, which imports it back."""

from __future__ import annotations

import os
from typing import Final

from rating.errors import InvalidValue
from streams.kafka.topics import DLQ_RETENTION_MS

RETENTION_ENV: Final = "BILLING_DLQ_RETENTION_DAYS"
DAY_MS: Final = 86_400_000


def dlq_retention_ms(days: int | None = None) -> int:
    """The dead-letter topics' retention: ``days``, else ``$BILLING_DLQ_RETENTION_DAYS``, else a
    year; -1 means forever."""
    if days is None:
        text = os.environ.get(RETENTION_ENV, "").strip()
        if not text:
            return DLQ_RETENTION_MS
        try:
            days = int(text)
        except ValueError:
            raise InvalidValue(RETENTION_ENV, f"expected a whole number of days, got {text!r}") from None
    if days == -1:
        return -1
    if days < 1:
        raise InvalidValue("retention days", f"must be at least 1 (or -1: forever), got {days}")
    return days * DAY_MS
