"""Claiming due rows in batches under a lease: the SQL every pump (worker/pump.py) runs.

A row is due when `next_run_at <= now()`. A claim moves `next_run_at` forward by the lease and stamps
a fresh `lease_token` on the row, in one statement with `FOR UPDATE SKIP LOCKED`, so any number of
workers can claim side by side without taking a row twice. The claimer writes its results back only
where the token is still its own (`WHERE lease_token = ...`); a crashed worker's rows simply fall due
again when the lease runs out, and the next claimer takes them over. While a batch is still working,
its lease is renewed (`renew`), so a slow batch is not taken over while alive; only a dead one is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import sql

from tender.store.db import Conn


@dataclass(frozen=True, slots=True)
class Claim:
    token: uuid.UUID
    rows: list[dict[str, Any]]  # each with `id`, `tries` (this claim's included) and the columns asked for


async def claim_due(conn: Conn, table: str, *, columns: Sequence[str], limit: int, lease_seconds: float) -> Claim:
    token = uuid.uuid4()
    query = sql.SQL(
        "UPDATE {table} SET next_run_at = now() + %(lease)s, lease_token = %(token)s, tries = tries + 1"
        " WHERE id IN (SELECT id FROM {table} WHERE next_run_at <= now()"
        "              ORDER BY next_run_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
        " RETURNING {columns}"
    ).format(
        table=sql.Identifier(table),
        columns=sql.SQL(", ").join(map(sql.Identifier, ["id", "tries", *columns])),
    )
    cur = await conn.execute(query, {"lease": timedelta(seconds=lease_seconds), "token": token, "limit": limit})
    return Claim(token=token, rows=await cur.fetchall())


async def release(conn: Conn, table: str, token: uuid.UUID, ids: Sequence[str]) -> int:
    """Give rows back unprocessed (graceful shutdown): due again at once, for any worker."""
    query = sql.SQL(
        "UPDATE {table} SET next_run_at = now(), lease_token = NULL, tries = greatest(tries - 1, 0)"
        " WHERE id = ANY(%s) AND lease_token = %s"
    ).format(table=sql.Identifier(table))
    cur = await conn.execute(query, (list(ids), token))
    return cur.rowcount


async def renew(conn: Conn, table: str, token: uuid.UUID, ids: Sequence[str], lease_seconds: float) -> int:
    """Push the lease of rows still held under `token` forward by `lease_seconds` from now."""
    query = sql.SQL("UPDATE {table} SET next_run_at = now() + %s WHERE id = ANY(%s) AND lease_token = %s").format(
        table=sql.Identifier(table)
    )
    cur = await conn.execute(query, (timedelta(seconds=lease_seconds), list(ids), token))
    return cur.rowcount
