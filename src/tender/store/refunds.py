"""SQL for refunds. (The payment amounts they take are in store/payments.py, their payables in
store/payables.py.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.money_models import Refund
from tender.store import notifications
from tender.store.db import Conn, Page, newest_first, returned_ids
from tender.store.rows import fetch_all, fetch_one

REFUND_COLUMNS = (
    "id, merchant_id, payment_id, amount, currency, status, reason, metadata, failure_code, failure_message,"
    " processor, processor_reference, calls, maybe_sent, last_error, created, updated"
)
# What the pump claims: everything above but the id and tries, which claim_due adds itself.
CLAIM_COLUMNS = [c.strip() for c in REFUND_COLUMNS.split(",") if c.strip() != "id"]
_FIELDS = tuple(f.name for f in fields(Refund))


def refund_of(row: Mapping[str, Any]) -> Refund:
    """The record of a row that holds more than a refund's columns (a claimed row: tries, ...)."""
    return Refund(**{name: row[name] for name in _FIELDS})


async def insert(conn: Conn, refund: Refund) -> None:
    """A new pending refund, due at once (a trigger wakes the workers at commit)."""
    await conn.execute(
        "INSERT INTO refunds (id, merchant_id, payment_id, amount, currency, status, reason, metadata, processor,"
        " next_run_at, created, updated) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s)",
        (refund.id, refund.merchant_id, refund.payment_id, refund.amount, refund.currency, refund.reason,
         Jsonb(refund.metadata), refund.processor, refund.created, refund.created, refund.created),
    )  # fmt: skip


async def pending_amount(conn: Conn, payment_id: str) -> int:
    """What refunds not yet answered hold of a payment: reserved, so that they can all succeed."""
    cur = await conn.execute(
        "SELECT coalesce(sum(amount), 0) AS held FROM refunds WHERE payment_id = %s AND status = 'pending'",
        (payment_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["held"])


async def get(conn: Conn, merchant_id: str, refund_id: str) -> Refund | None:
    return await fetch_one(
        conn, Refund, f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = %s AND merchant_id = %s",
        (refund_id, merchant_id),
    )  # fmt: skip


async def get_many(conn: Conn, refund_ids: Sequence[str]) -> list[Refund]:
    return await fetch_all(
        conn, Refund, f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = ANY(%s)", (list(refund_ids),)
    )


async def list_(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None, payment_id: str | None
) -> Page[Refund]:
    return await newest_first(
        conn, "refunds", REFUND_COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "payment_id": payment_id}, row_factory=class_row(Refund),
    )  # fmt: skip


async def mark_maybe_sent(conn: Conn, refund_ids: Sequence[str]) -> None:
    """Before a refund's call leaves: from now on it may be at the processor, so it is looked up first."""
    if refund_ids:
        await conn.execute("UPDATE refunds SET maybe_sent = true WHERE id = ANY(%s)", (list(refund_ids),))


async def write_results(conn: Conn, token: Any, changes: Sequence[dict[str, Any]]) -> set[str]:
    """Write outcomes where our lease still holds and the refund is still pending; the ids written."""
    if not changes:
        return set()
    async with conn.cursor() as cur:
        await cur.executemany(
            "UPDATE refunds SET status = %(status)s, failure_code = %(failure_code)s,"
            " failure_message = %(failure_message)s,"
            " processor_reference = coalesce(%(processor_reference)s, processor_reference),"
            " calls = calls + %(calls)s, maybe_sent = %(maybe_sent)s, next_run_at = %(next_run_at)s,"
            " last_error = %(last_error)s, lease_token = NULL,"
            " tries = CASE WHEN %(status)s = 'pending' THEN tries ELSE 0 END,"
            " updated = CASE WHEN status IS DISTINCT FROM %(status)s THEN %(updated)s ELSE updated END"
            " WHERE id = %(id)s AND lease_token = %(token)s AND status = 'pending' RETURNING id",
            [{**c, "token": token} for c in changes],
            returning=True,
        )
        return await returned_ids(cur)


async def schedule_now(conn: Conn, refund_id: str) -> bool:
    """An operator's retry of a pending refund: fresh tries, due at once, workers woken at commit."""
    cur = await conn.execute(
        "UPDATE refunds SET next_run_at = now(), tries = 0 WHERE id = %s AND status = 'pending' RETURNING id",
        (refund_id,),
    )
    found = await cur.fetchone() is not None
    if found:
        await notifications.announce_work(conn, "refunds")
    return found
