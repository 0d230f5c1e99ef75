"""The connection pool and the transaction helper every service uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

Conn = AsyncConnection[DictRow]

# orjson for json/jsonb columns: faster than the stdlib, and it refuses NaN and out-of-range numbers.
set_json_dumps(orjson.dumps)
set_json_loads(orjson.loads)


class Database:
    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 20) -> None:
        self.url = url
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            # No statement waits on a lock for more than 10 s: a request queued behind a stuck one fails
            # clearly (an idempotent replay waiting on a still-running first request gets a 409).
            kwargs={"row_factory": dict_row, "autocommit": True, "options": "-c lock_timeout=10s"},
            connection_class=AsyncConnection[DictRow],
            open=False,
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """One unit of work: everything written through `conn` commits or rolls back together."""
        async with self.pool.connection() as conn, conn.transaction():
            yield conn


async def returned_ids(cur: AsyncCursor[DictRow]) -> set[str]:
    """The `id`s an `executemany(..., returning=True)` returned, over all its result sets."""
    ids: set[str] = set()
    while True:
        row = await cur.fetchone()
        if row is not None:
            ids.add(row["id"])
        if not cur.nextset():
            return ids


async def newest_first(
    conn: Conn,
    table: str,
    columns: str,
    *,
    limit: int,
    starting_after: str | None,
    equal: dict[str, Any],
    conditions: tuple[tuple[str, Any], ...] = (),
) -> list[DictRow]:
    """One page of a list endpoint: rows where each `equal` column that is not None equals its value and
    each (condition, value) holds, newest first. Ids sort by creation time, so the cursor is the last id
    seen. Table, column names and conditions come from our code, never from a request."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in equal.items():
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    for condition, value in conditions:
        where.append(condition)
        params.append(value)
    if starting_after is not None:
        where.append("id < %s")
        params.append(starting_after)
    cur = await conn.execute(
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(where) or 'true'} ORDER BY id DESC LIMIT %s",
        (*params, limit),
    )
    return await cur.fetchall()
