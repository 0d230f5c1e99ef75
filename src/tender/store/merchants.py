"""SQL for merchants and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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


@dataclass(frozen=True, slots=True)
class ApiKey:
    merchant_id: str
    kind: str
    expires_at: datetime | None  # set when the key was rolled with an overlap


# A key works until it is revoked or its expiry (set by a roll) has passed.
_LIVE = "revoked IS NULL AND (expires_at IS NULL OR expires_at > now())"
KEYS_CHANNEL = "api_keys"  # notified (merchant id) in every transaction that rolls a merchant's keys


async def find_api_key(conn: Conn, key_hash: bytes) -> ApiKey | None:
    """A live key, or None."""
    cur = await conn.execute(
        f"SELECT merchant_id, kind, expires_at FROM api_keys WHERE key_hash = %s AND {_LIVE}",
        (key_hash,),
    )
    row = await cur.fetchone()
    return ApiKey(**row) if row else None


async def lock_merchant(conn: Conn, merchant_id: str) -> Merchant | None:
    cur = await conn.execute("SELECT id, name, created FROM merchants WHERE id = %s FOR UPDATE", (merchant_id,))
    row = await cur.fetchone()
    return Merchant(**row) if row else None


async def expire_live_keys(conn: Conn, merchant_id: str, after: timedelta) -> datetime:
    """Every live key of the merchant stops working `after` from now, or sooner if it already would;
    returns that time."""
    cur = await conn.execute("SELECT now() + %s AS expires_at", (after,))
    row = await cur.fetchone()
    assert row is not None
    expires_at: datetime = row["expires_at"]
    await conn.execute(
        f"UPDATE api_keys SET expires_at = LEAST(expires_at, %s) WHERE merchant_id = %s AND {_LIVE}",
        (expires_at, merchant_id),
    )
    return expires_at


async def announce_key_change(conn: Conn, merchant_id: str) -> None:
    """Delivered on commit to every API process's key listener, which forgets its cached keys."""
    await conn.execute("SELECT pg_notify(%s, %s)", (KEYS_CHANNEL, merchant_id))


async def get_merchant(conn: Conn, merchant_id: str) -> Merchant | None:
    cur = await conn.execute("SELECT id, name, created FROM merchants WHERE id = %s", (merchant_id,))
    row = await cur.fetchone()
    return Merchant(**row) if row else None


async def first_merchant_named(conn: Conn, name: str) -> Merchant | None:
    cur = await conn.execute("SELECT id, name, created FROM merchants WHERE name = %s ORDER BY id LIMIT 1", (name,))
    row = await cur.fetchone()
    return Merchant(**row) if row else None
