"""SQL for merchants and their API keys."""

from __future__ import annotations

from tender.domain.models import Merchant
from tender.store.db import Conn


async def insert_merchant(conn: Conn, merchant: Merchant) -> None:
    await conn.execute(
        "INSERT INTO merchants (id, name, created) VALUES (%s, %s, %s)",
        (merchant.id, merchant.name, merchant.created),
    )


async def insert_api_key(conn: Conn, *, key_hash: bytes, merchant_id: str, kind: str, hint: str) -> None:
    await conn.execute(
        "INSERT INTO api_keys (key_hash, merchant_id, kind, hint) VALUES (%s, %s, %s, %s)",
        (key_hash, merchant_id, kind, hint),
    )


async def find_api_key(conn: Conn, key_hash: bytes) -> tuple[str, str] | None:
    """(merchant id, key kind) of a live key, or None."""
    cur = await conn.execute(
        "SELECT merchant_id, kind FROM api_keys WHERE key_hash = %s AND revoked IS NULL", (key_hash,)
    )
    row = await cur.fetchone()
    return (row["merchant_id"], row["kind"]) if row else None


async def get_merchant(conn: Conn, merchant_id: str) -> Merchant | None:
    cur = await conn.execute("SELECT id, name, created FROM merchants WHERE id = %s", (merchant_id,))
    row = await cur.fetchone()
    return Merchant(**row) if row else None


async def first_merchant_named(conn: Conn, name: str) -> Merchant | None:
    cur = await conn.execute("SELECT id, name, created FROM merchants WHERE name = %s ORDER BY id LIMIT 1", (name,))
    row = await cur.fetchone()
    return Merchant(**row) if row else None
