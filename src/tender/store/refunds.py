"""SQL for refunds, the payment amounts they take, and the refund payables they leave."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from tender.store.db import Conn, Page, newest_first, returned_ids

REFUND_COLUMNS = (
    "id, merchant_id, payment_id, amount, currency, status, reason, metadata, failure_code, failure_message,"
    " processor, processor_reference, calls, maybe_sent, last_error, created, updated"
)
# What the pump claims: everything above but the id and tries, which claim_due adds itself.
CLAIM_COLUMNS = [c.strip() for c in REFUND_COLUMNS.split(",") if c.strip() != "id"]


async def insert(conn: Conn, refund: dict[str, Any]) -> None:
    """A new pending refund, due at once (a trigger wakes the workers at commit)."""
    await conn.execute(
        "INSERT INTO refunds (id, merchant_id, payment_id, amount, currency, status, reason, metadata, processor,"
        " next_run_at, created, updated) VALUES (%(id)s, %(merchant_id)s, %(payment_id)s, %(amount)s, %(currency)s,"
        " 'pending', %(reason)s, %(metadata)s, %(processor)s, %(created)s, %(created)s, %(created)s)",
        {**refund, "metadata": Jsonb(refund["metadata"])},
    )


async def pending_amount(conn: Conn, payment_id: str) -> int:
    """What refunds not yet answered hold of a payment: reserved, so that they can all succeed."""
    cur = await conn.execute(
        "SELECT coalesce(sum(amount), 0) AS held FROM refunds WHERE payment_id = %s AND status = 'pending'",
        (payment_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["held"])


async def get(conn: Conn, merchant_id: str, refund_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = %s AND merchant_id = %s", (refund_id, merchant_id)
    )
    return await cur.fetchone()


async def get_many(conn: Conn, refund_ids: Sequence[str]) -> list[dict[str, Any]]:
    cur = await conn.execute(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = ANY(%s)", (list(refund_ids),))
    return list(await cur.fetchall())


async def list_(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None, payment_id: str | None
) -> Page[dict[str, Any]]:
    return await newest_first(
        conn, "refunds", REFUND_COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "payment_id": payment_id},
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
        await conn.execute("SELECT pg_notify('tender_work', 'refunds')")
    return found


# -- the money side of a succeeded refund ------------------------------------------------------------


async def add_refunded(conn: Conn, amounts: dict[str, int], now: datetime) -> None:
    """payments.amount_refunded += the refunded amounts (its CHECK keeps it within amount_captured)."""
    async with conn.cursor() as cur:
        # One statement per payment in id order: every transaction locks payments in the same order.
        await cur.executemany(
            "UPDATE payments SET amount_refunded = amount_refunded + %s, updated = %s WHERE id = %s",
            [(amounts[pid], now, pid) for pid in sorted(amounts)],
        )


async def capture_payables_for_update(conn: Conn, payment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The payments' capture payables, row-locked: a settlement cannot pay one out while its refund is
    being recorded, so the refund follows the status the payable really has. Locked in id order, as the
    settlement locks its payables, so the two queue instead of deadlocking."""
    cur = await conn.execute(
        "SELECT id, payment_id, status, payment_method, funding, payment_date FROM payables"
        " WHERE payment_id = ANY(%s) AND type = 'payment' ORDER BY id FOR UPDATE",
        (sorted(set(payment_ids)),),
    )
    return {r["payment_id"]: r for r in await cur.fetchall()}


async def insert_payables(conn: Conn, rows: Sequence[dict[str, Any]]) -> None:
    """Refund payables: negative amount and net, no fee."""
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO payables (id, merchant_id, payment_id, refund_id, type, status, amount, fee, net,"
                " currency, payment_method, funding, payment_date, paid_at, created) VALUES (%(id)s, %(merchant_id)s,"
                " %(payment_id)s, %(refund_id)s, 'refund', %(status)s, %(amount)s, 0, %(amount)s, %(currency)s,"
                " %(payment_method)s, %(funding)s, %(payment_date)s, %(paid_at)s, %(created)s)",
                list(rows),
            )


async def payment_methods(conn: Conn, payment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The payments' public payment_method, for a refund whose capture left no payable to copy it from."""
    cur = await conn.execute("SELECT id, payment_method FROM payments WHERE id = ANY(%s)", (sorted(set(payment_ids)),))
    return {r["id"]: r["payment_method"] for r in await cur.fetchall()}
