"""SQL for reconciliation: Tender's side of a day at a processor (its authorize attempts and refunds), and the
runs (reconciliation_runs) with their figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.reconciliation import (
    FindingKind,
    LedgerRecord,
    ReconciliationRun,
    RecordKind,
    Report,
    RunTrigger,
    tender_charge_status,
    tender_refund_status,
)
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_one

COLUMNS = (
    "id, processor, day, trigger, status, tries, matched, missing_in_tender, missing_at_processor, mismatched,"
    " error, created, started, finished"
)


_CHARGES = (
    "SELECT a.id, a.processor_reference, a.status AS attempt_status, a.maybe_sent, a.created, a.finished,"
    " p.id AS payment, p.amount, p.currency, p.status AS payment_status, p.amount_captured"
    " FROM payment_attempts a JOIN payments p ON p.id = a.payment_id"
    " WHERE a.operation = 'authorize' AND a.processor = %s AND "
)
_REFUNDS = (
    "SELECT r.id, r.processor_reference, r.status, r.maybe_sent, r.created, r.updated, r.payment_id, r.amount,"
    " r.currency FROM refunds r WHERE r.processor = %s AND "
)


async def tender_records(conn: Conn, processor: str, start: datetime, end: datetime) -> list[LedgerRecord]:
    """Tender's charges (authorize attempts, with what their payment became) and refunds at `processor` made in
    [start, end). An attempt that the processor never processed (`not_processed`: failed over) is left out."""
    charges = await conn.execute(_CHARGES + "a.created >= %s AND a.created < %s", (processor, start, end))
    refunds = await conn.execute(_REFUNDS + "r.created >= %s AND r.created < %s", (processor, start, end))
    return _charges(await charges.fetchall()) + _refunds(await refunds.fetchall())


async def tender_records_named(
    conn: Conn, processor: str, references: Sequence[str], processor_ids: Sequence[str]
) -> list[LedgerRecord]:
    """Tender's charges and refunds at `processor` whose own id is one of `references` or whose processor id is one
    of `processor_ids`, whenever they were made (a processor's record of the day that Tender made long before)."""
    refs, ids = list(references), list(processor_ids)
    charges = await conn.execute(
        _CHARGES + "(a.id = ANY(%s) OR a.processor_reference = ANY(%s))", (processor, refs, ids)
    )
    refunds = await conn.execute(
        _REFUNDS + "(r.id = ANY(%s) OR r.processor_reference = ANY(%s))", (processor, refs, ids)
    )
    return _charges(await charges.fetchall()) + _refunds(await refunds.fetchall())


def _charges(rows: Sequence[Mapping[str, Any]]) -> list[LedgerRecord]:
    records: list[LedgerRecord] = []
    for row in rows:
        status = tender_charge_status(row["attempt_status"], row["payment_status"], maybe_sent=row["maybe_sent"])
        if status is None:
            continue
        records.append(
            LedgerRecord(
                kind=RecordKind.CHARGE,
                reference=row["id"],
                processor_id=row["processor_reference"],
                amount=row["amount"],
                currency=row["currency"],
                status=status,
                created=row["created"],
                amount_captured=row["amount_captured"],
                payment=row["payment"],
                answered=row["finished"],
            )
        )
    return records


def _refunds(rows: Sequence[Mapping[str, Any]]) -> list[LedgerRecord]:
    return [
        LedgerRecord(
            kind=RecordKind.REFUND,
            reference=row["id"],
            processor_id=row["processor_reference"],
            amount=row["amount"],
            currency=row["currency"],
            status=tender_refund_status(row["status"], maybe_sent=row["maybe_sent"]),
            created=row["created"],
            payment=row["payment_id"],
            answered=row["updated"],
        )
        for row in rows
    ]


async def insert_run(conn: Conn, run_id: str, processor: str, day: date, trigger: RunTrigger) -> None:
    await conn.execute(
        "INSERT INTO reconciliation_runs (id, processor, day, trigger) VALUES (%s, %s, %s, %s)",
        (run_id, processor, day, trigger.value),
    )


async def claim_daily(
    conn: Conn, run_id: str, processor: str, day: date, *, stale_after: timedelta, retry_after: timedelta
) -> str | None:
    """The worker's run of (processor, day), claimed by this caller: a new row (`run_id`), or the existing one
    taken over when its run was left `running` longer than `stale_after` (a crashed worker) or `failed` longer
    than `retry_after` ago. None: another worker has it, or it is done. The unique index makes it one row."""
    cur = await conn.execute(
        "INSERT INTO reconciliation_runs (id, processor, day, trigger) VALUES (%s, %s, %s, 'worker')"
        " ON CONFLICT (processor, day) WHERE trigger = 'worker' DO UPDATE"
        " SET status = 'running', started = now(), finished = NULL, error = NULL,"
        " tries = reconciliation_runs.tries + 1"
        " WHERE (reconciliation_runs.status = 'running' AND reconciliation_runs.started < now() - %s)"
        " OR (reconciliation_runs.status = 'failed' AND reconciliation_runs.finished < now() - %s)"
        " RETURNING id",
        (run_id, processor, day, stale_after, retry_after),
    )
    row = await cur.fetchone()
    return None if row is None else str(row["id"])


async def daily_runs(conn: Conn, processors: list[str], since: date) -> tuple[dict[str, date], set[tuple[str, date]]]:
    """For `processors`: the day of each one's first worker run ever (any status), and the (processor, day) pairs
    from `since` on whose worker run is completed (nothing left to do for that day)."""
    cur = await conn.execute(
        "SELECT processor, min(day) AS first FROM reconciliation_runs"
        " WHERE trigger = 'worker' AND processor = ANY(%s) GROUP BY processor",
        (processors,),
    )
    first = {r["processor"]: r["first"] for r in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT processor, day FROM reconciliation_runs"
        " WHERE trigger = 'worker' AND processor = ANY(%s) AND day >= %s AND status = 'completed'",
        (processors, since),
    )
    return first, {(r["processor"], r["day"]) for r in await cur.fetchall()}


async def complete(conn: Conn, run_id: str, report: Report) -> None:
    await conn.execute(
        "UPDATE reconciliation_runs SET status = 'completed', finished = now(), error = NULL, matched = %s,"
        " missing_in_tender = %s, missing_at_processor = %s, mismatched = %s WHERE id = %s",
        (
            report.matched,
            Jsonb(report.of(FindingKind.MISSING_IN_TENDER)),
            Jsonb(report.of(FindingKind.MISSING_AT_PROCESSOR)),
            Jsonb(report.of(FindingKind.MISMATCHED)),
            run_id,
        ),
    )


async def fail(conn: Conn, run_id: str, error: str) -> None:
    await conn.execute(
        "UPDATE reconciliation_runs SET status = 'failed', finished = now(), error = %s WHERE id = %s",
        (error[:1000], run_id),
    )


async def get(conn: Conn, run_id: str) -> ReconciliationRun | None:
    return await fetch_one(
        conn, ReconciliationRun, f"SELECT {COLUMNS} FROM reconciliation_runs WHERE id = %s", (run_id,)
    )


async def list_(
    conn: Conn, *, processor: str | None, limit: int, starting_after: str | None
) -> Page[ReconciliationRun]:
    equal: dict[str, Any] = {"processor": processor}
    return await newest_first(
        conn, "reconciliation_runs", COLUMNS, limit=limit, starting_after=starting_after, equal=equal,
        row_factory=class_row(ReconciliationRun),
    )  # fmt: skip
