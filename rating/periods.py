"""Billing periods: anniversary calendar arithmetic in the subscription's timezone, half-open."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating.errors import InvalidValue

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def epoch_ms(instant: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware instant (floored to the millisecond)."""
    return (instant - EPOCH) // ONE_MS


def from_epoch_ms(ms: int) -> datetime:
    """The UTC instant ``ms`` milliseconds after the Unix epoch."""
    return EPOCH + timedelta(milliseconds=ms)


class BillingInterval(StrEnum):
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open interval of instants ``[start, end)``, both timezone-aware UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidValue("period", "instants must be timezone-aware")
        if self.end < self.start:
            raise InvalidValue("period", f"end {self.end} is before start {self.start}")

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def seconds(self) -> Fraction:
        """Length in seconds, exact to the microsecond."""
        delta = self.end - self.start
        return Fraction(delta.days * 86400 + delta.seconds) + Fraction(delta.microseconds, 10**6)


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    """An IANA timezone, rejected by name when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise InvalidValue(field, f"unknown IANA timezone {name!r}") from None


def local_to_utc(local: datetime, timezone: str) -> datetime:
    """A naive wall-clock time in ``timezone`` to UTC (a time in a DST gap moves forward)."""
    return _local_to_utc(local, zone(timezone))


def _local_to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time to UTC; a time inside a DST gap moves forward by the gap.

    ``fold=0`` (PEP 495) reads a wall time with the offset in force before a transition. In a gap
    that is the offset before the clocks jumped, so the instant lands the gap's length later on the
    wall clock (02:30 on a New York spring-forward day is 07:30 UTC, 03:30 EDT); in an overlap it
    is the first of the two readings. ``fold=1`` would put a gap time *before* the gap (01:30 EST).
    """
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _add_months(local: datetime, months: int, anchor_day: int) -> datetime:
    total = local.year * 12 + (local.month - 1) + months
    year, month = divmod(total, 12)
    day = min(anchor_day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day)


def boundary(anchor: datetime, interval: BillingInterval, index: int, timezone: str) -> datetime:
    """The start of period ``index`` counted from ``anchor`` (index 0 is the anchor itself)."""
    tz = zone(timezone)
    local = anchor.astimezone(tz).replace(tzinfo=None)
    if interval is BillingInterval.WEEK:
        shifted = local + timedelta(days=7 * index)
    elif interval is BillingInterval.MONTH:
        shifted = _add_months(local, index, local.day)
    else:
        shifted = _add_months(local, 12 * index, local.day)
    return _local_to_utc(shifted, tz)


def period_at(anchor: datetime, interval: BillingInterval, timezone: str, instant: datetime) -> tuple[int, Period]:
    """The index and the nominal period (anchored at ``anchor``) that contains ``instant``."""
    if instant < anchor:
        raise InvalidValue("instant", f"{instant} is before the anchor {anchor}")
    days = (instant - anchor).days
    guess = {BillingInterval.WEEK: days // 7, BillingInterval.MONTH: days // 31, BillingInterval.YEAR: days // 366}[
        interval
    ]
    index = max(0, guess - 1)
    while boundary(anchor, interval, index + 1, timezone) <= instant:
        index += 1
    return index, Period(boundary(anchor, interval, index, timezone), boundary(anchor, interval, index + 1, timezone))


def add_local_days(instant: datetime, days: int, timezone: str) -> datetime:
    """``days`` calendar days later on the local wall clock (DST-aware)."""
    tz = zone(timezone)
    local = instant.astimezone(tz).replace(tzinfo=None) + timedelta(days=days)
    return _local_to_utc(local, tz)


def proration(used: Period, full: Period) -> Fraction:
    """Exact share of ``full`` that ``used`` covers, by seconds."""
    if full.seconds == 0:
        return Fraction(0)
    return used.seconds / full.seconds
