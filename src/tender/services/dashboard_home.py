"""What the dashboard's home pages show: a merchant's day and last 30 days of payments, its open issues
(failing webhook endpoints, open dead letters of its objects); for operators, the totals across merchants.

Days are business days (TENDER_BUSINESS_TIMEZONE). The days before today are read once per process and
merchant every PAST_DAYS_SECONDS (a minute): on 100,000 payments their aggregate is most of the page's time,
and they change only by late outcomes (a capture, a 3-D Secure result), which the page shows a minute later;
today's figures are read at every request. Volume is the captured amount of succeeded payments, per
currency (amounts of different currencies are never added). The success rate is approved (succeeded or
authorized) over approved and failed: payments still in progress or canceled by the merchant say nothing
about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from time import monotonic
from zoneinfo import ZoneInfo

from tender.store import dashboard_home as store
from tender.store.dashboard_home import FailingEndpoint, MerchantChoice, OpenDeadLetter
from tender.store.db import Conn, Database

DAYS = 30
MAX_MERCHANT_CHOICES = 500
PAST_DAYS_SECONDS = 60.0
_PAST_CACHE_SIZE = 256

# (merchant id or None for all, today, time zone) -> (read at, monotonic; the rows of the days before today)
_past_days: dict[tuple[str | None, date, str], tuple[float, list[store.DayRow]]] = {}


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    count: int = 0
    approved: int = 0
    failed: int = 0
    volume: dict[str, int] = field(default_factory=dict)  # currency -> minor units


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures of some days together (today, or the whole period)."""

    count: int
    approved: int
    failed: int
    volume: dict[str, int]

    @property
    def success_rate(self) -> Decimal | None:
        """Approved / (approved + failed), as a fraction; None when nothing was decided."""
        decided = self.approved + self.failed
        return Decimal(self.approved) / Decimal(decided) if decided else None


@dataclass(frozen=True, slots=True)
class Activity:
    days: list[Day]  # DAYS of them, oldest first, each present (zeros on a day without payments)
    today: Summary
    period: Summary

    @property
    def currencies(self) -> list[str]:
        """Currencies with volume in the period, largest volume first."""
        return sorted(self.period.volume, key=lambda c: (-self.period.volume[c], c))


@dataclass(frozen=True, slots=True)
class MerchantHome:
    activity: Activity
    failing_endpoints: list[FailingEndpoint]
    dead_letters: list[OpenDeadLetter]

    @property
    def issue_count(self) -> int:
        return len(self.failing_endpoints) + len(self.dead_letters)


@dataclass(frozen=True, slots=True)
class OperatorHome:
    activity: Activity
    merchants: list[MerchantChoice]
    open_dead_letters: int


def _start(tz: tzinfo, today: date) -> datetime:
    return datetime.combine(today - timedelta(days=DAYS - 1), time(0), tzinfo=tz)


async def _days(conn: Conn, merchant_id: str | None, tz: ZoneInfo, today: date) -> list[store.DayRow]:
    """The DAYS days' rows: the past ones from the cache while fresh, today's always from the database."""
    midnight = datetime.combine(today, time(0), tzinfo=tz)
    key = (merchant_id, today, tz.key)
    cached = _past_days.get(key)
    if cached is None or monotonic() - cached[0] > PAST_DAYS_SECONDS:
        past = await store.payments_per_day(conn, merchant_id, _start(tz, today), midnight, tz.key)
        if len(_past_days) >= _PAST_CACHE_SIZE:
            _past_days.pop(next(iter(_past_days)))  # the oldest entry
        _past_days[key] = cached = (monotonic(), past)
    todays = await store.payments_per_day(conn, merchant_id, midnight, midnight + timedelta(days=1), tz.key)
    return cached[1] + todays


def _activity(rows: list[store.DayRow], today: date) -> Activity:
    by_day: dict[date, Day] = {today - timedelta(days=n): Day(today - timedelta(days=n)) for n in range(DAYS)}
    for row in rows:
        old = by_day.get(row.day)
        if old is None:
            continue
        volume = dict(old.volume)
        if row.volume:
            volume[row.currency] = volume.get(row.currency, 0) + row.volume
        by_day[row.day] = Day(
            row.day, old.count + row.count, old.approved + row.approved, old.failed + row.failed, volume
        )
    days = [by_day[d] for d in sorted(by_day)]
    return Activity(days=days, today=_sum([by_day[today]]), period=_sum(days))


def _sum(days: list[Day]) -> Summary:
    volume: dict[str, int] = {}
    for d in days:
        for currency, amount in d.volume.items():
            volume[currency] = volume.get(currency, 0) + amount
    return Summary(
        count=sum(d.count for d in days),
        approved=sum(d.approved for d in days),
        failed=sum(d.failed for d in days),
        volume=volume,
    )


async def merchant_home(db: Database, merchant_id: str, tz: ZoneInfo, *, now: datetime | None = None) -> MerchantHome:
    today = (now or datetime.now(tz)).astimezone(tz).date()
    async with db.connection() as conn:
        rows = await _days(conn, merchant_id, tz, today)
        endpoints = await store.failing_endpoints(conn, merchant_id)
        letters = await store.open_dead_letters(conn, merchant_id)
    return MerchantHome(_activity(rows, today), endpoints, letters)


async def merchant_issues(db: Database, merchant_id: str) -> tuple[list[FailingEndpoint], list[OpenDeadLetter]]:
    """The open issues alone (the home page's panel refreshes them)."""
    async with db.connection() as conn:
        return await store.failing_endpoints(conn, merchant_id), await store.open_dead_letters(conn, merchant_id)


async def merchant_choices(db: Database) -> list[MerchantChoice]:
    """The merchants an operator may pick (by name; at most MAX_MERCHANT_CHOICES)."""
    async with db.connection() as conn:
        return await store.merchants(conn, MAX_MERCHANT_CHOICES)


async def operator_home(db: Database, tz: ZoneInfo, *, now: datetime | None = None) -> OperatorHome:
    today = (now or datetime.now(tz)).astimezone(tz).date()
    async with db.connection() as conn:
        rows = await _days(conn, None, tz, today)
        choices = await store.merchants(conn, MAX_MERCHANT_CHOICES)
        letters = await store.count_open_dead_letters(conn)
    return OperatorHome(_activity(rows, today), choices, letters)
