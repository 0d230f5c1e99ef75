"""Billing periods: period n of a subscription, following the calendar of the business time zone.

Period n starts at the anchor moved by n * interval_count intervals, computed from the anchor each time (never
from the previous period), in local dates of the business time zone:
- month/year: the anchor's day of month, clamped to the month's length, so an anchor of Jan 31 gives
  Feb 28 (29 in a leap year) and then Mar 31 again; Feb 29 yearly gives Feb 28 in common years;
- day/week: the same local wall time n days (7n for weeks) later, so a daily period across a DST change
  lasts 23 or 25 hours but always starts at the same local time.
The local wall time is then turned back into an instant (a time that does not exist in the zone, in a DST
gap, is read with the offset from before the gap; an ambiguous one takes the anchor's side of the change, so
period 0 starts exactly at the anchor). Periods are
half-open [start, end): period n's end is period n+1's start, so they have no gaps and no overlaps.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, tzinfo

from tender.domain.recurring import Interval


def _local(at: datetime, tz: tzinfo) -> datetime:
    if at.tzinfo is None:
        raise ValueError("periods need aware datetimes")
    return at.astimezone(tz)


def _add_months(day: date, months: int, anchor_day: int) -> date:
    total = day.year * 12 + (day.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def period_start(anchor: datetime, index: int, interval: Interval | str, interval_count: int, tz: tzinfo) -> datetime:
    """The start of period `index` (0: the anchor itself), in UTC."""
    if interval_count < 1:
        raise ValueError("interval_count must be at least 1")
    local = _local(anchor, tz)
    steps = index * interval_count
    match Interval(interval):
        case Interval.DAY:
            day = local.date() + timedelta(days=steps)
        case Interval.WEEK:
            day = local.date() + timedelta(days=7 * steps)
        case Interval.MONTH:
            day = _add_months(local.date(), steps, local.day)
        case Interval.YEAR:
            day = _add_months(local.date(), 12 * steps, local.day)
    wall = datetime.combine(day, local.time()).replace(tzinfo=tz, fold=local.fold)
    return wall.astimezone(UTC)


def period_end(anchor: datetime, index: int, interval: Interval | str, interval_count: int, tz: tzinfo) -> datetime:
    """The end of period `index` (exclusive): the start of the next one."""
    return period_start(anchor, index + 1, interval, interval_count, tz)


def period_bounds(
    anchor: datetime, index: int, interval: Interval | str, interval_count: int, tz: tzinfo
) -> tuple[datetime, datetime]:
    """Period `index` as [start, end)."""
    return (
        period_start(anchor, index, interval, interval_count, tz),
        period_end(anchor, index, interval, interval_count, tz),
    )


_APPROX_DAYS = {Interval.DAY: 1.0, Interval.WEEK: 7.0, Interval.MONTH: 30.436875, Interval.YEAR: 365.2425}


def period_index(anchor: datetime, at: datetime, interval: Interval | str, interval_count: int, tz: tzinfo) -> int:
    """The period containing `at`: the n with start(n) <= at < start(n+1) (negative before the anchor)."""
    if at.tzinfo is None:
        raise ValueError("periods need aware datetimes")
    kind = Interval(interval)
    # An estimate from the average length, then corrected by the calendar (at most a step or two).
    days = (at - anchor).total_seconds() / 86400
    index = int(days // (_APPROX_DAYS[kind] * interval_count))
    while period_start(anchor, index, kind, interval_count, tz) > at:
        index -= 1
    while period_start(anchor, index + 1, kind, interval_count, tz) <= at:
        index += 1
    return index
