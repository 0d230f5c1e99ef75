"""domain/periods: calendar billing periods (no gaps, no overlaps, month ends, leap years, DST) as properties."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tender.domain.periods import period_bounds, period_end, period_index, period_start
from tender.domain.recurring import Interval

ZONES = [ZoneInfo(name) for name in ("UTC", "America/Sao_Paulo", "America/New_York", "Europe/London", "Asia/Kolkata")]

zones = st.sampled_from(ZONES)
intervals = st.sampled_from(list(Interval))
counts = st.integers(min_value=1, max_value=12)
indexes = st.integers(min_value=0, max_value=60)


@st.composite
def anchors(draw: st.DrawFn) -> datetime:
    naive = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 12, 31)))
    return naive.replace(tzinfo=UTC)


def _local_day(at: datetime, tz: ZoneInfo) -> int:
    return at.astimezone(tz).day


@given(anchor=anchors(), index=indexes, interval=intervals, count=counts, tz=zones)
def test_consecutive_periods_meet_without_gap_or_overlap(
    anchor: datetime, index: int, interval: Interval, count: int, tz: ZoneInfo
) -> None:
    start, end = period_bounds(anchor, index, interval, count, tz)
    next_start, _ = period_bounds(anchor, index + 1, interval, count, tz)
    assert start < end
    assert end == next_start


@given(anchor=anchors(), interval=intervals, count=counts, tz=zones)
def test_period_zero_starts_at_the_anchor(anchor: datetime, interval: Interval, count: int, tz: ZoneInfo) -> None:
    assert period_start(anchor, 0, interval, count, tz) == anchor


@given(anchor=anchors(), interval=intervals, count=counts, tz=zones, a=indexes, b=indexes)
def test_starts_are_monotonic(anchor: datetime, interval: Interval, count: int, tz: ZoneInfo, a: int, b: int) -> None:
    if a < b:
        assert period_start(anchor, a, interval, count, tz) < period_start(anchor, b, interval, count, tz)


@given(anchor=anchors(), index=indexes, tz=zones)
def test_a_month_lasts_28_to_31_local_days(anchor: datetime, index: int, tz: ZoneInfo) -> None:
    start, end = period_bounds(anchor, index, Interval.MONTH, 1, tz)
    days = (end.astimezone(tz).date() - start.astimezone(tz).date()).days
    assert 28 <= days <= 31
    # And in real time, at most an hour off (a DST change inside the period).
    assert timedelta(days=28, hours=-1) <= end - start <= timedelta(days=31, hours=1)


@given(anchor=anchors(), index=indexes, tz=zones)
def test_a_year_lasts_365_or_366_local_days_and_keeps_the_anchor_date(
    anchor: datetime, index: int, tz: ZoneInfo
) -> None:
    local_anchor = anchor.astimezone(tz)
    start, end = (b.astimezone(tz) for b in period_bounds(anchor, index, Interval.YEAR, 1, tz))
    assert (end.date() - start.date()).days in (365, 366)
    assert start.year == local_anchor.year + index and start.month == local_anchor.month
    # Feb 29 falls back to Feb 28 in a common year; every other day is kept.
    assert start.day == local_anchor.day or (local_anchor.month, local_anchor.day, start.day) == (2, 29, 28)


@given(anchor=anchors(), index=indexes, tz=zones)
def test_months_keep_the_anchor_day_clamped_to_the_month_length(anchor: datetime, index: int, tz: ZoneInfo) -> None:
    local_anchor = anchor.astimezone(tz)
    start = period_start(anchor, index, Interval.MONTH, 1, tz).astimezone(tz)
    last_day = calendar.monthrange(start.year, start.month)[1]
    assert start.day == min(local_anchor.day, last_day)
    months = (start.year - local_anchor.year) * 12 + start.month - local_anchor.month
    assert months == index


@given(anchor=anchors(), index=indexes, count=counts, tz=zones)
def test_days_and_weeks_keep_the_local_wall_time(anchor: datetime, index: int, count: int, tz: ZoneInfo) -> None:
    local_anchor = anchor.astimezone(tz)
    for interval, days in ((Interval.DAY, 1), (Interval.WEEK, 7)):
        start = period_start(anchor, index, interval, count, tz).astimezone(tz)
        assert (start.date() - local_anchor.date()).days == days * count * index
        # The same wall time, unless it fell in a DST gap (then an hour later).
        wall = datetime.combine(start.date(), start.time()) - datetime.combine(start.date(), local_anchor.time())
        assert wall in (timedelta(0), timedelta(hours=1))


@given(anchor=anchors(), at_offset=st.integers(min_value=0, max_value=20 * 366 * 86400), interval=intervals,
       count=counts, tz=zones)  # fmt: skip
def test_period_index_finds_the_period_containing_a_time(
    anchor: datetime, at_offset: int, interval: Interval, count: int, tz: ZoneInfo
) -> None:
    at = anchor + timedelta(seconds=at_offset)
    n = period_index(anchor, at, interval, count, tz)
    start, end = period_bounds(anchor, n, interval, count, tz)
    assert start <= at < end


def test_jan_31_goes_to_the_end_of_february_and_back_to_march_31() -> None:
    anchor = datetime(2027, 1, 31, 12, tzinfo=UTC)
    starts = [period_start(anchor, n, Interval.MONTH, 1, UTC).date().isoformat() for n in range(4)]
    assert starts == ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
    leap = datetime(2028, 1, 31, 12, tzinfo=UTC)
    assert period_end(leap, 0, Interval.MONTH, 1, UTC) == datetime(2028, 2, 29, 12, tzinfo=UTC)


def test_feb_29_yearly_is_feb_28_in_common_years_and_29_in_leap_years() -> None:
    anchor = datetime(2028, 2, 29, 9, tzinfo=UTC)
    days = [period_start(anchor, n, Interval.YEAR, 1, UTC).date().isoformat() for n in range(5)]
    assert days == ["2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29"]


def test_periods_follow_the_business_time_zone_not_utc() -> None:
    # 23:30 on Jan 31 in São Paulo is Feb 1 in UTC: the calendar is São Paulo's.
    tz = ZoneInfo("America/Sao_Paulo")
    anchor = datetime(2027, 1, 31, 23, 30, tzinfo=tz)
    end = period_end(anchor, 0, Interval.MONTH, 1, tz).astimezone(tz)
    assert (end.month, end.day, end.hour, end.minute) == (2, 28, 23, 30)


def test_a_daily_period_across_a_dst_change_keeps_the_local_time() -> None:
    tz = ZoneInfo("America/New_York")  # clocks go forward on 2027-03-14
    anchor = datetime(2027, 3, 13, 9, tzinfo=tz)
    start, end = period_bounds(anchor, 0, Interval.DAY, 1, tz)
    assert end - start == timedelta(hours=23)
    assert end.astimezone(tz).hour == 9


@pytest.mark.parametrize("bad", [0, -1])
def test_interval_count_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="interval_count"):
        period_start(datetime(2027, 1, 1, tzinfo=UTC), 1, Interval.MONTH, bad, UTC)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        period_start(datetime(2027, 1, 1), 1, Interval.MONTH, 1, UTC)
