"""SQL for the velocity limits: declined payments in a window, the hosted page's address hashes, and the
look-ups a returning shopper may ask for (migration 0007)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from tender.store import notifications
from tender.store.db import Conn

# Each query answers the decline times in the window, newest first, at most `limit` of them: the caller needs
# only to know whether there are `limit`, and when the limit-th newest leaves the window.


async def card_declines(
    conn: Conn, merchant_id: str, fingerprint: str, codes: Collection[str], since: datetime, limit: int
) -> list[datetime]:
    cur = await conn.execute(
        "SELECT updated FROM payments WHERE merchant_id = %s AND payment_method -> 'card' ->> 'fingerprint' = %s"
        " AND status = 'failed' AND failure_code = ANY(%s) AND updated > %s ORDER BY updated DESC LIMIT %s",
        (merchant_id, fingerprint, list(codes), since, limit),
    )
    return [row["updated"] for row in await cur.fetchall()]


async def session_declines(
    conn: Conn, session_id: str, codes: Collection[str], since: datetime, limit: int
) -> list[datetime]:
    cur = await conn.execute(
        "SELECT updated FROM payments WHERE checkout_session_id = %s AND status = 'failed'"
        " AND failure_code = ANY(%s) AND updated > %s ORDER BY updated DESC LIMIT %s",
        (session_id, list(codes), since, limit),
    )
    return [row["updated"] for row in await cur.fetchall()]


async def address_declines(
    conn: Conn, address_hash: bytes, codes: Collection[str], since: datetime, created_since: datetime, limit: int
) -> list[datetime]:
    """`created_since` bounds the payments looked at (the index is by creation); `since` the declines counted."""
    cur = await conn.execute(
        "SELECT p.updated FROM checkout_client_addresses a JOIN payments p ON p.id = a.payment_id"
        " WHERE a.address_hash = %s AND a.created > %s AND p.status = 'failed' AND p.failure_code = ANY(%s)"
        " AND p.updated > %s ORDER BY p.updated DESC LIMIT %s",
        (address_hash, created_since, list(codes), since, limit),
    )
    return [row["updated"] for row in await cur.fetchall()]


async def record_address(conn: Conn, payment_id: str, address_hash: bytes, created: datetime) -> None:
    await conn.execute(
        "INSERT INTO checkout_client_addresses (payment_id, address_hash, created) VALUES (%s, %s, %s)"
        " ON CONFLICT (payment_id) DO NOTHING",
        (payment_id, address_hash, created),
    )


async def delete_addresses_before(conn: Conn, before: datetime) -> int:
    cur = await conn.execute("DELETE FROM checkout_client_addresses WHERE created < %s", (before,))
    return cur.rowcount


async def request_lookup(conn: Conn, payment_id: str, interval_seconds: float) -> bool:
    """Make a payment waiting for the shopper due at once, unless a shopper asked less than `interval_seconds`
    ago: one statement, so concurrent requests in any number of API processes get one look-up between them.
    Wakes the workers (delivered at commit) when it did."""
    cur = await conn.execute(
        "UPDATE payments SET shopper_lookup_at = now(), next_run_at = now() WHERE id = %s"
        " AND status = 'requires_action'"
        " AND (shopper_lookup_at IS NULL OR shopper_lookup_at <= now() - make_interval(secs => %s)) RETURNING id",
        (payment_id, interval_seconds),
    )
    if await cur.fetchone() is None:
        return False
    await notifications.announce_work(conn, "payments")
    return True
