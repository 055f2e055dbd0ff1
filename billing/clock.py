"""The one place that reads the system clock; everything else is handed a Clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class TestClock:
    """A clock that only moves when told to (``simulate``, fault tests), like Stripe's test clocks."""

    __test__ = False  # not a pytest class

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance_to(self, instant: datetime) -> None:
        if instant < self._now:
            raise ValueError(f"a test clock never goes back ({instant} < {self._now})")
        self._now = instant


def monotonic() -> float:
    """Seconds for measuring durations (benchmarks, progress), never for billing."""
    return time.monotonic()
