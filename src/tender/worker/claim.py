"""Claiming due rows in batches under a lease: the one mechanism every pump reuses.

A row is due when `next_run_at <= now()`. A claim moves `next_run_at` forward by the lease and stamps
a fresh `lease_token` on the row, in one statement with `FOR UPDATE SKIP LOCKED`, so any number of
workers can claim side by side without taking a row twice. The claimer writes its results back only
where the token is still its own (`WHERE lease_token = ...`); a crashed worker's rows simply fall due
again when the lease runs out, and the next claimer takes them over. While a batch is still working
(`held`), its lease is renewed, so a slow batch is not taken over while alive; only a dead one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import sql

from tender.store.db import Conn, Database

log = logging.getLogger(__name__)


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


async def renew(conn: Conn, table: str, token: uuid.UUID, ids: Sequence[str], lease_seconds: float) -> int:
    """Push the lease of rows still held under `token` forward by `lease_seconds` from now."""
    query = sql.SQL("UPDATE {table} SET next_run_at = now() + %s WHERE id = ANY(%s) AND lease_token = %s").format(
        table=sql.Identifier(table)
    )
    cur = await conn.execute(query, (timedelta(seconds=lease_seconds), list(ids), token))
    return cur.rowcount


@contextlib.asynccontextmanager
async def held(db: Database, table: str, claim: Claim, lease_seconds: float) -> AsyncIterator[None]:
    """Renew the claim's lease every third of it while the block runs (the processor calls of a batch).

    A worker that dies stops renewing, and its rows fall due one lease later; one that is merely slow
    (a saturated processor, many timeouts in a batch) keeps them, and its results are not thrown away.
    """

    done = asyncio.Event()

    async def renew_until_done() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), lease_seconds / 3)
                return
            try:
                async with db.transaction() as conn:
                    await renew(conn, table, claim.token, [r["id"] for r in claim.rows], lease_seconds)
            except Exception as exc:  # the batch goes on; if the lease lapses, its results are dropped
                log.warning("could not renew a lease on %s: %s", table, type(exc).__name__)

    # Stopped by an event, not cancelled: a renewal in flight finishes its transaction cleanly.
    task = asyncio.create_task(renew_until_done(), name=f"renew-{table}-lease")
    try:
        yield
    finally:
        done.set()
        await task


def backoff_seconds(tries: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads retries of a burst apart."""
    return random.uniform(0, min(cap, base * 2 ** max(tries - 1, 0)))
