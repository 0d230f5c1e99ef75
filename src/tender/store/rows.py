"""Typed rows: a query's rows made into a record (a dataclass of domain/models.py) by psycopg's `class_row`,
so what a store function returns is checked by mypy wherever it is used, not a dict of strings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from psycopg.rows import class_row

from tender.store.db import Conn

R = TypeVar("R")

Params = Sequence[Any] | Mapping[str, Any]


async def fetch_one(conn: Conn, record: type[R], query: str, params: Params = ()) -> R | None:
    """The first row as a `record` (its fields named as the query's columns), or None."""
    async with conn.cursor(row_factory=class_row(record)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def fetch_all(conn: Conn, record: type[R], query: str, params: Params = ()) -> list[R]:
    async with conn.cursor(row_factory=class_row(record)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
