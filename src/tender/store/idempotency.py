"""SQL for idempotency keys: one row per (merchant, key), reserved and answered in the request's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from tender.store.db import Conn
from tender.store.rows import fetch_one

# The in-flight lock's key: a 64-bit hash of this prefix, the merchant and the key. Any other advisory lock
# (the migrations' constant, the settlement's two-int keys) meets it only by a 2**-64 chance, and the cost
# of such a meeting would be one spurious 409, which a client retries.
_LOCK_PREFIX = "idempotency:"


async def try_lock(conn: Conn, merchant_id: str, key: str) -> bool:
    """Take the key's transaction-scoped advisory lock without waiting; False while another transaction
    holds it, i.e. while a request with this key is running. Released at commit or rollback."""
    cur = await conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0)) AS free",
        (f"{_LOCK_PREFIX}{merchant_id}:{key}",),
    )
    row = await cur.fetchone()
    return bool(row and row["free"])


async def reserve(conn: Conn, merchant_id: str, key: str, request_hash: bytes) -> bool:
    """Insert the key; False if it exists. Under `try_lock` no other transaction holds the key uncommitted,
    so this does not wait (without it, a concurrent holder of the key would make it wait for its commit)."""
    cur = await conn.execute(
        "INSERT INTO idempotency_keys (merchant_id, key, request_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (merchant_id, key, request_hash),
    )
    return await cur.fetchone() is not None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key's row: the request's keyed fingerprint and, once its transaction committed, the answer."""

    request_hash: bytes | None  # None: stored before migration 0006 erased the unkeyed hashes
    status_code: int | None  # None: the first request has not answered (only seen inside its transaction)
    response_body: bytes | None
    response_headers: Any  # jsonb: an object of header names and values


async def find(conn: Conn, merchant_id: str, key: str) -> StoredKey | None:
    return await fetch_one(
        conn,
        StoredKey,
        "SELECT request_hash, status_code, response_body, response_headers FROM idempotency_keys"
        " WHERE merchant_id = %s AND key = %s",
        (merchant_id, key),
    )


async def save_response(
    conn: Conn, merchant_id: str, key: str, status_code: int, body: bytes, headers: dict[str, str]
) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = %s, response_body = %s, response_headers = %s"
        " WHERE merchant_id = %s AND key = %s",
        (status_code, body, Jsonb(headers), merchant_id, key),
    )


async def delete_older_than(conn: Conn, hours: int) -> int:
    cur = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created < now() - make_interval(hours => %s)", (hours,)
    )
    return cur.rowcount
