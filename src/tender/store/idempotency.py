"""SQL for idempotency keys: one row per (merchant, key), reserved and answered in the request's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb

from tender.store.db import Conn
from tender.store.rows import fetch_one

# The in-flight lock's key: a 64-bit hash of this prefix, the merchant and the key. Any other advisory lock
# (the migrations' constant, the settlement's two-int keys) meets it only by a 2**-64 chance, and the cost
# of such a meeting would be one spurious 409, which a client retries.
LOCK_PREFIX = "idempotency:"


class Reservation(NamedTuple):
    """What `begin_and_reserve` found: `free` False while another transaction holds the key's lock (a request
    with this key is running); `reserved` True when this transaction inserted the key (the first request)."""

    free: bool
    reserved: bool


async def begin_and_reserve(conn: Conn, merchant_id: str, key: str, request_hash: bytes) -> Reservation:
    """Begin the request's transaction on `conn` (autocommit, outside a transaction: `Database.own_transaction`)
    and, in the same round trip (one pipeline), take the key's transaction-scoped advisory lock without
    waiting (released at commit or rollback) and, only if it was free, insert the key unless it exists.
    Under the lock no other transaction holds the key uncommitted, so the insert does not wait (without it,
    a concurrent holder of the key would make it wait for its commit). The lock's CTE is volatile, so it is
    evaluated once, before the insert that reads it."""
    async with conn.pipeline():
        await conn.execute("BEGIN")
        cur = await conn.execute(
            "WITH lock AS (SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0)) AS free),"
            " inserted AS (INSERT INTO idempotency_keys (merchant_id, key, request_hash)"
            " SELECT %s, %s, %s FROM lock WHERE lock.free ON CONFLICT DO NOTHING RETURNING 1)"
            " SELECT lock.free, EXISTS (SELECT FROM inserted) AS reserved FROM lock",
            (f"{LOCK_PREFIX}{merchant_id}:{key}", merchant_id, key, request_hash),
        )
    row = await cur.fetchone()  # the pipeline's end sent both and read their results: no further round trip
    assert row is not None  # the CTE has one row
    return Reservation(bool(row["free"]), bool(row["reserved"]))


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


async def answer_and_commit(
    conn: Conn, merchant_id: str, key: str, status_code: int, body: bytes, headers: dict[str, str]
) -> None:
    """Store the answer on the key's row and COMMIT the request's transaction, in one round trip (one
    pipeline). If the UPDATE fails, the COMMIT is not run (the pipeline is aborted) and the error is raised."""
    async with conn.pipeline():
        await conn.execute(
            "UPDATE idempotency_keys SET status_code = %s, response_body = %s, response_headers = %s"
            " WHERE merchant_id = %s AND key = %s",
            (status_code, body, Jsonb(headers), merchant_id, key),
        )
        await conn.execute("COMMIT")


async def delete_older_than(conn: Conn, hours: int) -> int:
    cur = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created < now() - make_interval(hours => %s)", (hours,)
    )
    return cur.rowcount
