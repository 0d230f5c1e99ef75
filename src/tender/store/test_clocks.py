"""SQL for test clocks. An advance is serialized per clock by a transaction-level advisory lock held by the
advancing request for the whole advance (its own connection), so the clock's row can be updated meanwhile
(status `advancing`, then `ready`) and read by everyone."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from psycopg.rows import class_row

from tender.domain.recurring import TestClock, TestClockStatus
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_one

COLUMNS = ", ".join(f.name for f in fields(TestClock))
ADVANCE_WAIT_SECONDS = 120


async def insert(conn: Conn, clock: TestClock) -> None:
    await conn.execute(
        "INSERT INTO test_clocks (id, merchant_id, name, frozen_time, status, created, updated)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (clock.id, clock.merchant_id, clock.name, clock.frozen_time, clock.status, clock.created, clock.updated),
    )


async def get(conn: Conn, merchant_id: str, clock_id: str, *, lock: bool = False) -> TestClock | None:
    return await fetch_one(
        conn,
        TestClock,
        f"SELECT {COLUMNS} FROM test_clocks WHERE id = %s AND merchant_id = %s" + (" FOR UPDATE" if lock else ""),
        (clock_id, merchant_id),
    )


async def list_(conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None) -> Page[TestClock]:
    return await newest_first(
        conn, "test_clocks", COLUMNS, limit=limit, starting_after=starting_after, equal={"merchant_id": merchant_id},
        row_factory=class_row(TestClock),
    )  # fmt: skip


async def take_advance_lock(conn: Conn, clock_id: str) -> None:
    """Wait for (and hold until `conn`'s transaction ends) the right to advance this clock. An advance may run
    long (billing waits for the clock's payments), so this waits up to ADVANCE_WAIT_SECONDS rather than the pool's
    10 s lock_timeout; past it, the database's lock timeout (a 503 asking to retry)."""
    await conn.execute(f"SET LOCAL lock_timeout = '{ADVANCE_WAIT_SECONDS}s'")
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('test_clock:' || %s, 0))", (clock_id,))


async def set_state(conn: Conn, clock_id: str, *, frozen_time: datetime, status: TestClockStatus) -> TestClock:
    clock = await fetch_one(
        conn,
        TestClock,
        f"UPDATE test_clocks SET frozen_time = %s, status = %s, updated = now() WHERE id = %s RETURNING {COLUMNS}",
        (frozen_time, status, clock_id),
    )
    assert clock is not None
    return clock
