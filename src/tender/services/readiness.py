"""Readiness: whether the database answers in time and its schema is the one this code was shipped with."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tender.store import migrate
from tender.store.db import Database


@dataclass(frozen=True, slots=True)
class Readiness:
    expected: str | None  # the newest migration shipped with this code
    current: str | None = None  # the database's schema revision
    error: str | None = None  # the class of what failed when the database did not answer in time


async def readiness(db: Database, *, wait_seconds: float) -> Readiness:
    """A probe answers in time: a database that is down is an error within `wait_seconds`, not after the
    pool's own wait for a connection."""
    expected = await asyncio.to_thread(migrate.head_revision)
    try:
        async with db.connection(wait_seconds=wait_seconds) as conn:
            current = await migrate.schema_revision(conn)
    except Exception as exc:
        return Readiness(expected, error=type(exc).__name__)
    return Readiness(expected, current)
