"""Claiming due rows in batches under a lease: the one mechanism every pump reuses.

A row is due when `next_run_at <= now()`. A claim moves `next_run_at` forward by the lease and stamps
a fresh `lease_token` on the row, in one statement with `FOR UPDATE SKIP LOCKED`, so any number of
workers can claim side by side without taking a row twice. The claimer writes its results back only
where the token is still its own (`WHERE lease_token = ...`); a crashed worker's rows simply fall due
again when the lease runs out, and the next claimer takes them over.
"""

from __future__ import annotations

import random
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
    rows: list[dict[str, Any]]


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


def backoff_seconds(tries: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads retries of a burst apart."""
    return random.uniform(0, min(cap, base * 2 ** max(tries - 1, 0)))
