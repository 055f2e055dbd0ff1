"""The one place that reads the system clock; everything else is handed a Clock."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Protocol

from rating.periods import epoch_ms


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


class FileClock:
    """A clock another process sets: the instant written in a file (RFC 3339), re-read on every
    call. The wall-clock rater runs on it in tests and rehearsals (``billing rater --clock-file``);
    it never goes back, whatever the file says."""

    def __init__(self, path: str) -> None:
        from pathlib import Path

        self.path = Path(path)
        self._last: datetime | None = None

    @staticmethod
    def set(path: str | os.PathLike[str], instant: datetime) -> None:
        """Move the clock of ``path``: written aside and renamed, so a reader never sees half a file."""
        from pathlib import Path

        target = Path(path)
        aside = target.with_name(f".{target.name}.{os.getpid()}")
        aside.write_text(instant.isoformat(), encoding="utf-8")
        aside.replace(target)

    def now(self) -> datetime:
        text = self.path.read_text(encoding="utf-8").strip()
        if not text and self._last is not None:
            return self._last  # someone rewrote it in place, not through set(): it is mid-write
        instant = datetime.fromisoformat(text)
        if instant.tzinfo is None:
            raise ValueError(f"{self.path}: the instant must carry a timezone, got {instant.isoformat()}")
        if self._last is not None and instant < self._last:
            return self._last
        self._last = instant
        return instant


def wall_ms() -> int:
    """Milliseconds since the epoch on the system clock, whatever clock the billing runs on: what
    Kafka's message timestamps are compared with (the sink's event-to-queryable latency)."""
    return epoch_ms(SystemClock().now())


def monotonic() -> float:
    """Seconds for measuring durations (benchmarks, progress), never for billing."""
    return time.monotonic()
