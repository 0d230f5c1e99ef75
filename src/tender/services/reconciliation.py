"""Reconciliation: does Tender's book of a day at a processor match the processor's own?

A run reads both sides over the business day (Settings.business_timezone, the zone of settlement's days) widened
by MARGIN at both ends: Tender's authorize attempts and refunds at that processor (store/reconciliations.py) and
the processor's charges and refunds (`Processor.list_records`: the simulator's `GET /v1/records`, Stripe's list
APIs), and lets domain/reconciliation.py decide what matches. The run and its figures are stored
(reconciliation_runs; GET /admin/v1/reconciliations) and announced as the operator event
`reconciliation.completed`. Findings stay on the run, for an operator to look into: they are not dead letters,
as there is no work Tender could retry.

`tender reconcile` runs one on demand; the worker runs one per processor that is on for yesterday, once a day
after midnight plus `after` (Settings.reconcile_after_minutes), exactly once across workers: the (processor, day)
row is claimed first (a unique index), and one left `running` by a crashed worker is taken over after `stale`.
A day the workers missed (all of them stopped then, or the processor's records unreadable until the day was
over) is run later, oldest first, while it is at most `catch_up_days` old and not before the processor's first
worker run (a new installation does not reconcile the week before it existed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from tender.domain.ids import new_id
from tender.domain.operator_events import RECONCILIATION_COMPLETED
from tender.domain.reconciliation import (
    RECONCILIATION,
    FindingKind,
    ReconciliationRun,
    Report,
    RunTrigger,
    day_bounds,
    reconcile,
)
from tender.errors import InvalidRequest, NotFound
from tender.processors.base import Processor, RecordsUnavailable
from tender.services.objects import iso
from tender.store import operator_events
from tender.store import reconciliations as store
from tender.store.db import Database

log = logging.getLogger(__name__)

MARGIN = timedelta(hours=2)  # both sides are read this much beyond the day (domain/reconciliation.py)
LATEST = timedelta(days=2)  # the processor's side is read at most this far past the day (see `run`)


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run: its id and report (None when the processor's records could not be read)."""

    run_id: str
    report: Report | None
    error: str | None = None


async def run(
    db: Database,
    processor: Processor,
    day: date,
    tz: tzinfo,
    *,
    trigger: RunTrigger = RunTrigger.CLI,
    run_id: str | None = None,
) -> RunResult:
    """Reconcile `processor`'s records of `day` (in `tz`) with Tender's and store the run. `run_id`: a run
    already claimed (the worker's); else a new one is recorded first, so a run that dies shows as running."""
    name = processor.name
    if run_id is None:
        run_id = new_id(RECONCILIATION)
        async with db.connection() as conn:
            await store.insert_run(conn, run_id, name, day, trigger)
    start, end = day_bounds(day, tz)
    async with db.connection() as conn:
        ours = await store.tender_records(conn, name, start - MARGIN, end + MARGIN)
    # The processor may have made a charge of the day as late as Tender recorded its answer (a 3-D Secure or an
    # APM approval, a processor down for a while): its records are read that far (at most LATEST after the day).
    answered = [r.answered for r in ours if r.answered is not None and start <= r.created < end]
    until = min(max([end, *answered]), end + LATEST) + MARGIN
    try:
        theirs = await processor.list_records(start - MARGIN, until)
    except Exception as exc:  # RecordsUnavailable, or a client's bug: the run fails and says so, never hangs
        detail = str(exc) if isinstance(exc, RecordsUnavailable) else type(exc).__name__
        error = f"the {name} processor's records could not be read: {detail}"
        async with db.transaction() as conn:
            await store.fail(conn, run_id, error)
        log.warning("reconciliation %s of %s on %s failed: %s", run_id, name, day, error)
        return RunResult(run_id, None, error)
    # ... and a processor's record of the day that Tender wrote long before it (an attempt made at acceptance,
    # sent only when the processor came back) is looked up by its ids, not taken for one Tender never made.
    known: set[str | None] = {key for r in ours for key in (r.reference, r.processor_id) if key}
    strays = [r for r in theirs if start <= r.created < end and not {r.reference, r.processor_id} & known]
    if strays:
        async with db.connection() as conn:
            ours += await store.tender_records_named(
                conn,
                name,
                [r.reference for r in strays if r.reference],
                [r.processor_id for r in strays if r.processor_id],
            )
    report = reconcile(name, day, (start, end), ours, theirs)
    async with db.transaction() as conn:
        await store.complete(conn, run_id, report)
        await operator_events.insert(conn, RECONCILIATION_COMPLETED, _event_data(run_id, report, trigger))
    log_line = log.info if report.clean else log.warning
    log_line(
        "reconciliation %s of %s on %s: %d matched, %d missing in Tender, %d missing at the processor, %d mismatched",
        run_id,
        name,
        day,
        report.matched,
        len(report.of(FindingKind.MISSING_IN_TENDER)),
        len(report.of(FindingKind.MISSING_AT_PROCESSOR)),
        len(report.of(FindingKind.MISMATCHED)),
    )
    return RunResult(run_id, report)


def _event_data(run_id: str, report: Report, trigger: RunTrigger) -> dict[str, Any]:
    return {
        "reconciliation": run_id,
        "processor": report.processor,
        "date": report.day.isoformat(),
        "trigger": trigger.value,
        "matched": report.matched,
        **{kind.value: len(report.of(kind)) for kind in FindingKind},
    }


def report_object(report: Report) -> dict[str, Any]:
    """The CLI's --json (API.md): processor, date, matched and the three lists of findings."""
    return {
        "processor": report.processor,
        "date": report.day.isoformat(),
        "matched": report.matched,
        **{kind.value: report.of(kind) for kind in FindingKind},
    }


def reconciliation_object(r: ReconciliationRun) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "reconciliation",
        "processor": r.processor,
        "date": r.day.isoformat(),
        "trigger": r.trigger.value,
        "status": r.status.value,
        "matched": r.matched,
        "missing_in_tender": r.missing_in_tender,
        "missing_at_processor": r.missing_at_processor,
        "mismatched": r.mismatched,
        "error": r.error,
        "created": iso(r.created),
        "finished": iso(r.finished) if r.finished else None,
    }


async def list_runs(
    db: Database, *, processor: str | None = None, limit: int = 10, starting_after: str | None = None
) -> tuple[list[dict[str, Any]], bool]:
    async with db.connection() as conn:
        page = await store.list_(conn, processor=processor, limit=limit, starting_after=starting_after)
    return [reconciliation_object(r) for r in page.rows], page.has_more


async def get_run(db: Database, run_id: str) -> dict[str, Any]:
    async with db.connection() as conn:
        found = await store.get(conn, run_id)
    if found is None:
        raise NotFound("No such reconciliation.", param="id")
    return reconciliation_object(found)


def parse_day(text: str, tz: tzinfo, *, now: datetime | None = None) -> date:
    """A YYYY-MM-DD up to today in `tz` (a later day has no records yet): else InvalidRequest naming `date`."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest("date: must be a date as YYYY-MM-DD", param="date") from None
    today = (now or datetime.now(tz)).astimezone(tz).date()
    if day > today:
        raise InvalidRequest(f"date: after today ({today} in {tz}); nothing happened yet", param="date")
    return day


class DailyRun:
    """The worker's daily reconciliation: for yesterday (business time zone), once it is `after` past midnight,
    one run per processor that is on, exactly once across workers (module docstring), and the days before it the
    workers missed, up to `catch_up_days` back. A run whose processor could not be read is tried again `retry`
    later, until the day falls out of that window. Not a BatchPump: it claims one row per processor and day, and
    looks at most once every `check_seconds` (each look is two queries)."""

    def __init__(
        self,
        db: Database,
        processors: Mapping[str, Processor],
        *,
        tz: tzinfo,
        after: timedelta,
        stale: timedelta,
        retry: timedelta = timedelta(minutes=15),
        check_seconds: float = 60.0,
        catch_up_days: int = 7,
    ) -> None:
        if catch_up_days < 1:
            raise ValueError("catch_up_days must be at least 1 (yesterday)")
        self._db = db
        self._processors = processors
        self._tz = tz
        self._after = after
        self._stale = stale
        self._retry = retry
        self._check_seconds = check_seconds
        self._catch_up_days = catch_up_days
        self._next_check = 0.0
        self._done: dict[str, date] = {}  # processor -> the yesterday whose window is known completed

    def due_day(self, now: datetime) -> date | None:
        """The day to reconcile at `now`: yesterday, once today is `after` old (None before that)."""
        local = now.astimezone(self._tz)
        midnight = datetime.combine(local.date(), datetime.min.time(), tzinfo=self._tz)
        if local - midnight < self._after:
            return None
        return local.date() - timedelta(days=1)

    async def run_batch(self, limit: int, *, now: datetime | None = None) -> int:
        """Claim and run what is due (at most `limit` runs); how many ran."""
        if time.monotonic() < self._next_check and now is None:
            return 0
        self._next_check = time.monotonic() + self._check_seconds
        day = self.due_day(now or datetime.now(self._tz))
        if day is None:
            return 0
        wanted = [name for name in self._processors if self._done.get(name) != day]
        if not wanted:
            return 0
        since = day - timedelta(days=self._catch_up_days - 1)
        async with self._db.connection() as conn:
            first, settled = await store.daily_runs(conn, wanted, since)
        ran = 0
        for name in wanted:
            start = max(since, first.get(name, day))  # never run before: yesterday only
            todo = [d for d in _days(start, day) if (name, d) not in settled]
            for missed in todo:
                if ran >= limit:
                    return ran
                async with self._db.connection() as conn:
                    run_id = await store.claim_daily(
                        conn, new_id(RECONCILIATION), name, missed, stale_after=self._stale, retry_after=self._retry
                    )
                if run_id is None:  # another worker's, running or failed recently
                    continue
                outcome = await run(
                    self._db, self._processors[name], missed, self._tz, trigger=RunTrigger.WORKER, run_id=run_id
                )
                if outcome.report is not None:
                    settled.add((name, missed))
                ran += 1
            if all((name, d) in settled for d in todo):
                self._done[name] = day
        return ran


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
