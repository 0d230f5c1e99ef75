"""SQL for payment attempts: one row per processor operation, written before its first call."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from tender.domain.models import Attempt
from tender.store.db import Conn

ATTEMPT_COLUMNS = "id, payment_id, operation, processor, status, amount, calls, maybe_sent, processor_reference"


async def open_attempts(conn: Conn, payment_ids: Sequence[str]) -> dict[str, list[Attempt]]:
    """Operations not yet finished (pending, or waiting for the shopper), oldest first, by payment."""
    cur = await conn.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE payment_id = ANY(%s) AND finished IS NULL ORDER BY id",
        (list(payment_ids),),
    )
    found: dict[str, list[Attempt]] = {}
    for row in await cur.fetchall():
        found.setdefault(row["payment_id"], []).append(Attempt(**row))
    return found


async def find(conn: Conn, attempt_id: str) -> Attempt | None:
    cur = await conn.execute(f"SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE id = %s", (attempt_id,))
    row = await cur.fetchone()
    return Attempt(**row) if row else None


async def latest_authorizations(conn: Conn, payment_ids: Sequence[str]) -> dict[str, Attempt]:
    """The latest answered authorize attempt by payment (finished or not): what a look-up asks about when
    nothing is in progress (after a refused capture or cancel, at the capture window's end)."""
    cur = await conn.execute(
        f"SELECT DISTINCT ON (payment_id) {ATTEMPT_COLUMNS} FROM payment_attempts"
        " WHERE payment_id = ANY(%s) AND operation = 'authorize' AND status IN ('approved', 'action_required')"
        " ORDER BY payment_id, id DESC",
        (list(payment_ids),),
    )
    return {row["payment_id"]: Attempt(**row) for row in await cur.fetchall()}


# unnest's arrays go in binary (%b): cheaper to dump than text arrays (store/payments.py, issue 16).
async def open_voids(conn: Conn, cancels: Sequence[Attempt]) -> list[str]:
    """Tender's own cancels, each unless its payment already has a capture or cancel in progress (a merchant's
    request may have come in meanwhile: it goes first). Returns the payments that got one."""
    if not cancels:
        return []
    cur = await conn.execute(
        "INSERT INTO payment_attempts (id, payment_id, operation, processor, status)"
        " SELECT c.id, c.payment_id, 'cancel', c.processor, 'pending'"
        " FROM unnest(%b::text[], %b::text[], %b::text[]) AS c (id, payment_id, processor)"
        " WHERE NOT EXISTS (SELECT 1 FROM payment_attempts a WHERE a.payment_id = c.payment_id"
        "                   AND a.operation IN ('capture', 'cancel') AND a.finished IS NULL)"
        " RETURNING payment_id",
        ([c.id for c in cancels], [c.payment_id for c in cancels], [c.processor for c in cancels]),
    )
    return [row["payment_id"] for row in await cur.fetchall()]


async def insert(conn: Conn, attempts: Sequence[Attempt], *, marked: Collection[str] = ()) -> None:
    """New pending attempts, in one statement; the `marked` ones already marked maybe_sent (about to be sent:
    see `mark_maybe_sent`)."""
    if attempts:
        await conn.execute(
            "INSERT INTO payment_attempts (id, payment_id, operation, processor, status, amount, maybe_sent)"
            " SELECT a.id, a.payment_id, a.operation, a.processor, 'pending', a.amount, a.maybe_sent"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[], %b::boolean[])"
            " AS a (id, payment_id, operation, processor, amount, maybe_sent)",
            (
                [a.id for a in attempts],
                [a.payment_id for a in attempts],
                [a.operation for a in attempts],
                [a.processor for a in attempts],
                [a.amount for a in attempts],
                [a.id in marked for a in attempts],
            ),
        )


async def mark_maybe_sent(conn: Conn, attempt_ids: Sequence[str]) -> None:
    """Authorizations about to be sent, in the claim's transaction: if the worker dies with the call in flight,
    the record says it may have reached the processor (never failed over, looked up first)."""
    if attempt_ids:
        await conn.execute("UPDATE payment_attempts SET maybe_sent = true WHERE id = ANY(%s)", (list(attempt_ids),))


# One statement for a batch's attempts (it was one UPDATE per attempt); `a.` columns are the row's old values.
# `a.id = ANY(...)` and no prepared statement keep the primary key's index (see payments._UPDATE_AFTER_PROCESSING).
_RECORD_CALLS = """
UPDATE payment_attempts a SET status = c.status, calls = a.calls + c.calls, last_error = c.last_error,
  maybe_sent = CASE WHEN c.marked THEN c.maybe_sent ELSE a.maybe_sent OR c.maybe_sent END,
  processor_reference = coalesce(c.processor_reference, a.processor_reference),
  failure_code = c.failure_code, decline_code = c.decline_code, message = c.message,
  finished = CASE WHEN c.status IN ('pending', 'action_required') THEN NULL ELSE now() END
FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::boolean[], %b::boolean[], %b::text[], %b::text[],
            %b::text[], %b::text[])
  AS c (id, status, calls, last_error, marked, maybe_sent, processor_reference, failure_code, decline_code, message)
WHERE a.id = ANY(%s) AND a.id = c.id
"""


async def record_calls(
    conn: Conn, attempts: Sequence[Attempt], *, uncounted: Collection[str] = (), marked: Collection[str] = ()
) -> None:
    """One more call of each attempt (none for the `uncounted`: never sent) and its outcome; pending and
    action_required ones stay open. `marked`: attempts marked maybe_sent by this claim, whose flag is now what
    the call showed (a call that certainly did not reach the processor leaves it as it was before)."""
    if attempts:
        await conn.execute(_RECORD_CALLS, (
            [a.id for a in attempts],
            [a.status for a in attempts],
            [int(a.id not in uncounted) for a in attempts],
            [a.last_error for a in attempts],
            [a.id in marked for a in attempts],
            [a.maybe_sent for a in attempts],
            [a.processor_reference for a in attempts],
            [a.failure_code for a in attempts],
            [a.decline_code for a in attempts],
            [a.message for a in attempts],
            [a.id for a in attempts],
        ), prepare=False)  # fmt: skip


async def record_answer(conn: Conn, attempt: Attempt) -> None:
    """Record a definitive outcome that arrived without a call of ours (an inbound notification)."""
    await conn.execute(
        "UPDATE payment_attempts SET status = %(status)s, maybe_sent = true,"
        " processor_reference = coalesce(%(processor_reference)s, processor_reference),"
        " failure_code = %(failure_code)s, decline_code = %(decline_code)s, message = %(message)s,"
        " finished = CASE WHEN %(status)s IN ('pending', 'action_required') THEN NULL ELSE now() END"
        " WHERE id = %(id)s",
        _row(attempt),
    )


async def close_authorizations(conn: Conn, payment_ids: Sequence[str]) -> None:
    """A canceled payment's authorization that was still waiting for the shopper is over."""
    if payment_ids:
        await conn.execute(
            "UPDATE payment_attempts SET status = 'declined', message = 'canceled', finished = now()"
            " WHERE payment_id = ANY(%s) AND operation = 'authorize' AND finished IS NULL",
            (list(payment_ids),),
        )


async def history(conn: Conn, payment_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, operation, processor, status, calls, maybe_sent, last_error, failure_code, created, finished"
        " FROM payment_attempts WHERE payment_id = %s ORDER BY id",
        (payment_id,),
    )
    return [
        {**row, "created": row["created"].isoformat(), "finished": row["finished"] and row["finished"].isoformat()}
        for row in await cur.fetchall()
    ]


def _row(a: Attempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "status": a.status,
        "last_error": a.last_error,
        "maybe_sent": a.maybe_sent,
        "processor_reference": a.processor_reference,
        "failure_code": a.failure_code,
        "decline_code": a.decline_code,
        "message": a.message,
    }
