"""Periods: anniversary arithmetic with the month-end clamp, week and year, local calendars and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from rating.errors import InvalidValue
from rating.periods import (
    BillingInterval,
    Period,
    add_local_days,
    boundary,
    epoch_ms,
    from_epoch_ms,
    local_to_utc,
    period_at,
    proration,
    zone,
)

pytestmark = pytest.mark.unit

MONTH, WEEK, YEAR = BillingInterval.MONTH, BillingInterval.WEEK, BillingInterval.YEAR


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def wall(*args: int) -> datetime:
    """A naive local wall-clock time."""
    return utc(*args).replace(tzinfo=None)


def boundaries(anchor: datetime, interval: BillingInterval, n: int, timezone: str = "UTC") -> list[datetime]:
    return [boundary(anchor, interval, i, timezone) for i in range(n)]


def test_month_end_anchor_is_clamped_and_kept() -> None:
    assert boundaries(utc(2026, 1, 31, 10), MONTH, 6) == [
        utc(2026, 1, 31, 10),
        utc(2026, 2, 28, 10),
        utc(2026, 3, 31, 10),  # the anchor day comes back: not Mar 28
        utc(2026, 4, 30, 10),
        utc(2026, 5, 31, 10),
        utc(2026, 6, 30, 10),
    ]


def test_month_end_clamp_in_a_leap_year() -> None:
    assert boundaries(utc(2028, 1, 31), MONTH, 3) == [utc(2028, 1, 31), utc(2028, 2, 29), utc(2028, 3, 31)]


def test_anchor_on_the_30th_and_29th() -> None:
    assert boundaries(utc(2026, 1, 30), MONTH, 3) == [utc(2026, 1, 30), utc(2026, 2, 28), utc(2026, 3, 30)]
    assert boundaries(utc(2026, 1, 29), MONTH, 3) == [utc(2026, 1, 29), utc(2026, 2, 28), utc(2026, 3, 29)]


def test_months_cross_the_year() -> None:
    assert boundary(utc(2026, 11, 15), MONTH, 3, "UTC") == utc(2027, 2, 15)
    assert boundary(utc(2026, 12, 31), MONTH, 2, "UTC") == utc(2027, 2, 28)


def test_weeks_are_seven_local_days() -> None:
    assert boundaries(utc(2026, 1, 1, 9), WEEK, 3) == [utc(2026, 1, 1, 9), utc(2026, 1, 8, 9), utc(2026, 1, 15, 9)]


def test_weeks_across_dst_keep_the_local_time() -> None:
    # 2026-03-08 02:00 New York springs forward: the week holding it is an hour shorter.
    start = utc(2026, 3, 5, 5)  # 00:00 EST
    first, second = boundaries(start, WEEK, 3, "America/New_York")[1:]
    assert first == utc(2026, 3, 12, 4)  # 00:00 EDT
    assert first - start == timedelta(days=7, hours=-1)
    assert second - first == timedelta(days=7)


def test_years_keep_month_and_day_and_clamp_feb_29() -> None:
    assert boundaries(utc(2028, 2, 29), YEAR, 5) == [
        utc(2028, 2, 29),
        utc(2029, 2, 28),
        utc(2030, 2, 28),
        utc(2031, 2, 28),
        utc(2032, 2, 29),
    ]


def test_monthly_in_jakarta_follows_the_local_calendar() -> None:
    # 2026-01-31 00:00 in Jakarta (UTC+7) is 2026-01-30 17:00 UTC: the anchor day is the 31st locally.
    anchor = utc(2026, 1, 30, 17)
    assert boundaries(anchor, MONTH, 3, "Asia/Jakarta") == [anchor, utc(2026, 2, 27, 17), utc(2026, 3, 30, 17)]


def test_monthly_across_dst_in_new_york_keeps_local_midnight() -> None:
    anchor = utc(2026, 2, 1, 5)  # 00:00 EST
    march, april = boundaries(anchor, MONTH, 3, "America/New_York")[1:]
    assert march == utc(2026, 3, 1, 5)
    assert april == utc(2026, 4, 1, 4)  # 00:00 EDT
    assert (april - march) == timedelta(days=31, hours=-1)


def test_a_local_time_in_the_dst_gap_moves_forward() -> None:
    # 02:30 on 2026-03-08 does not exist in New York; it reads as 03:30 EDT.
    assert local_to_utc(wall(2026, 3, 8, 2, 30), "America/New_York") == utc(2026, 3, 8, 7, 30)
    # and wall-clock order is kept: a minute before the gap is before a minute inside it
    assert local_to_utc(wall(2026, 3, 8, 1, 59), "America/New_York") < local_to_utc(
        wall(2026, 3, 8, 2, 0), "America/New_York"
    )


@pytest.mark.parametrize(
    ("timezone", "in_gap", "expected", "gap"),
    [
        ("America/New_York", wall(2026, 3, 8, 2, 0), utc(2026, 3, 8, 7, 0), timedelta(hours=1)),
        ("America/New_York", wall(2026, 3, 8, 2, 59, 59), utc(2026, 3, 8, 7, 59, 59), timedelta(hours=1)),
        ("Europe/London", wall(2026, 3, 29, 1, 30), utc(2026, 3, 29, 1, 30), timedelta(hours=1)),
        ("Australia/Lord_Howe", wall(2026, 10, 4, 2, 15), utc(2026, 10, 3, 15, 45), timedelta(minutes=30)),
        ("Pacific/Apia", wall(2011, 12, 30, 12, 0), utc(2011, 12, 30, 22, 0), timedelta(days=1)),  # a skipped day
    ],
)
def test_a_time_in_any_gap_reads_the_gap_length_later_on_the_wall_clock(
    timezone: str, in_gap: datetime, expected: datetime, gap: timedelta
) -> None:
    instant = local_to_utc(in_gap, timezone)
    assert instant == expected
    assert instant.astimezone(zone(timezone)).replace(tzinfo=None) == in_gap + gap


def test_the_gap_minutes_land_on_the_hour_after_the_gap_never_before_it() -> None:
    minutes = [wall(2026, 3, 8) + timedelta(minutes=m) for m in range(24 * 60)]
    instants = [local_to_utc(m, "America/New_York") for m in minutes]
    before, gap, after = instants[:120], instants[120:180], instants[180:]
    assert before == sorted(before) and after == sorted(after)
    assert gap == after[:60]  # 02:xx reads as 03:xx EDT, minute for minute
    assert max(before) < min(gap)


def test_local_times_outside_the_gap() -> None:
    assert local_to_utc(wall(2026, 3, 8, 1, 59), "America/New_York") == utc(2026, 3, 8, 6, 59)
    assert local_to_utc(wall(2026, 3, 8, 3, 0), "America/New_York") == utc(2026, 3, 8, 7, 0)
    assert local_to_utc(wall(2026, 1, 1, 7, 0), "Asia/Jakarta") == utc(2026, 1, 1, 0, 0)


def test_an_ambiguous_local_time_takes_the_first_reading() -> None:
    # 01:30 on 2026-11-01 happens twice in New York; fold 0 is the EDT one.
    assert local_to_utc(wall(2026, 11, 1, 1, 30), "America/New_York") == utc(2026, 11, 1, 5, 30)


def test_an_anchor_in_the_gap_month_moves_forward_only_that_month() -> None:
    anchor = local_to_utc(wall(2026, 2, 8, 2, 30), "America/New_York")  # 02:30 EST
    march, april = boundaries(anchor, MONTH, 3, "America/New_York")[1:]
    assert march == utc(2026, 3, 8, 7, 30)  # 03:30 EDT (02:30 does not exist that day)
    assert april == utc(2026, 4, 8, 6, 30)  # 02:30 EDT again


def test_add_local_days_across_dst() -> None:
    start = utc(2026, 3, 7, 17)  # 12:00 EST
    assert add_local_days(start, 1, "America/New_York") == utc(2026, 3, 8, 16)  # 12:00 EDT, 23 hours later
    assert add_local_days(start, 1, "UTC") == start + timedelta(days=1)


@pytest.mark.parametrize(
    ("interval", "instant", "index", "start", "end"),
    [
        (MONTH, utc(2026, 1, 31, 10), 0, utc(2026, 1, 31, 10), utc(2026, 2, 28, 10)),
        (MONTH, utc(2026, 2, 28, 9, 59), 0, utc(2026, 1, 31, 10), utc(2026, 2, 28, 10)),
        (MONTH, utc(2026, 2, 28, 10), 1, utc(2026, 2, 28, 10), utc(2026, 3, 31, 10)),  # half-open
        (MONTH, utc(2027, 1, 31, 10), 12, utc(2027, 1, 31, 10), utc(2027, 2, 28, 10)),
        (WEEK, utc(2026, 2, 14, 10), 2, utc(2026, 2, 14, 10), utc(2026, 2, 21, 10)),
        (YEAR, utc(2030, 6, 1), 4, utc(2030, 1, 31, 10), utc(2031, 1, 31, 10)),
    ],
)
def test_period_at_finds_the_half_open_period(
    interval: BillingInterval, instant: datetime, index: int, start: datetime, end: datetime
) -> None:
    assert period_at(utc(2026, 1, 31, 10), interval, "UTC", instant) == (index, Period(start, end))


def test_period_at_rejects_instants_before_the_anchor() -> None:
    with pytest.raises(InvalidValue):
        period_at(utc(2026, 1, 1), MONTH, "UTC", utc(2025, 12, 31))


def test_period_is_half_open_and_aware() -> None:
    period = Period(utc(2026, 1, 1), utc(2026, 2, 1))
    assert period.contains(utc(2026, 1, 1))
    assert not period.contains(utc(2026, 2, 1))
    assert period.seconds == 31 * 86400
    with pytest.raises(InvalidValue):
        Period(datetime(2026, 1, 1), utc(2026, 2, 1))  # noqa: DTZ001
    with pytest.raises(InvalidValue):
        Period(utc(2026, 2, 1), utc(2026, 1, 1))


def test_proration_is_the_exact_share_of_seconds() -> None:
    full = Period(utc(2026, 1, 1), utc(2026, 2, 1))
    assert proration(Period(utc(2026, 1, 1), utc(2026, 1, 15)), full) == Fraction(14, 31)
    assert proration(Period(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 1)), full) == Fraction(1, 31 * 86400)
    assert proration(full, full) == 1
    empty = Period(utc(2026, 1, 1), utc(2026, 1, 1))
    assert proration(empty, empty) == 0


def test_unknown_timezone_is_rejected_naming_the_field() -> None:
    with pytest.raises(InvalidValue) as caught:
        zone("Mars/Olympus", "subscriptions[0].timezone")
    assert caught.value.field == "subscriptions[0].timezone"
    with pytest.raises(InvalidValue):
        boundary(utc(2026, 1, 1), MONTH, 1, "Not/AZone")
    with pytest.raises(InvalidValue):
        zone("x" * 10_000)  # the zone file's name is too long: OSError, which used to escape


def test_epoch_ms_round_trip() -> None:
    instant = utc(2026, 1, 1, 0, 0, 0) + timedelta(milliseconds=123)
    assert epoch_ms(instant) == 1_767_225_600_123
    assert from_epoch_ms(epoch_ms(instant)) == instant
    assert epoch_ms(utc(2026, 1, 1) + timedelta(microseconds=999)) == 1_767_225_600_000  # floored
