"""PostgreSQL's LISTEN/NOTIFY: the news Tender's processes give one another, and the connections that hear it.

Three listeners use this: the worker (due work, `WORK`), the API's live payment status (`PAYMENT_STATUS`) and
its API key cache (store.merchants.KEYS_CHANNEL). A LISTEN belongs to a session, so it cannot live in the
pool (a pooled connection goes back reset, and a pooler in transaction mode would drop it: docs/scaling.md).
Each caller keeps its own reconnect loop: what it must do after a loss (wake every waiter, forget its
cache, look for work nobody announced) is its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from tender.store.db import Conn

WORK = "tender_work"  # notified (a table name) by triggers on tables with due rows, and by announce_work
PAYMENT_STATUS = "payment_status"  # notified (the payment's id) by a trigger on payments.status (migration 0002)
_PING_TIMEOUT_SECONDS = 10.0  # a keep-alive LISTEN that takes longer: the connection is taken for dead


async def announce_work(conn: Conn, table: str) -> None:
    """Tell idle workers that `table` has rows due now, delivered at commit: for writes that fire no trigger
    (an UPDATE of next_run_at); a worker that misses it still finds the rows at its next poll."""
    await conn.execute("SELECT pg_notify(%s, %s)", (WORK, table))


class Listener:
    """One connection LISTENing on one channel."""

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow], channel: str) -> None:
        self._conn = conn
        self._listen = _listen(channel)

    @property
    def backend_pid(self) -> int:
        """The server process of this connection (what pg_terminate_backend takes)."""
        return self._conn.info.backend_pid

    async def payloads(self, ping_seconds: float) -> AsyncIterator[str]:
        """Each notification's payload, for ever. After `ping_seconds` of silence the connection is checked
        with a LISTEN again (a no-op): a half-open TCP connection would otherwise stay silent for ever. A dead
        connection raises (psycopg.Error, OSError or TimeoutError); notifications arriving during the check
        are kept by psycopg and come next."""
        while True:
            async for note in self._conn.notifies(timeout=ping_seconds):
                yield note.payload
            async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
                await self._conn.execute(self._listen)


@asynccontextmanager
async def listening(url: str, channel: str, *, application_name: str) -> AsyncIterator[Listener]:
    """A new connection LISTENing on `channel`, shown as `application_name` in pg_stat_activity; closed on exit.
    Notifications committed from the moment this is entered are delivered."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=10, application_name=application_name
    ) as conn:
        await conn.execute(_listen(channel))
        yield Listener(conn, channel)


def _listen(channel: str) -> sql.Composed:
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))
